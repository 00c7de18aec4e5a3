package ova

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/diskimage/ova/ovatest"
)

// packOVA writes an OVA laid out as VMware exports one: descriptor,
// manifest, then the disk; corrupt flips a byte of the disk after its
// digest is taken.
func packOVA(t *testing.T, path string, ovf, disk []byte, corrupt bool) {
	t.Helper()
	mf := fmt.Sprintf("SHA256(web.ovf)= %x\nSHA1(web-disk1.vmdk)= %x\n", sha256.Sum256(ovf), sha1Sum(disk))
	if corrupt {
		disk = bytes.Clone(disk)
		disk[len(disk)/2] ^= 1
	}
	ovatest.WriteTar(t, path, ovatest.Member{Name: "web.ovf", Data: ovf}, ovatest.Member{Name: "web.mf", Data: []byte(mf)}, ovatest.Member{Name: "web-disk1.vmdk", Data: disk})
}

func sha1Sum(b []byte) []byte {
	h := newHash("SHA1")
	h.Write(b)
	return h.Sum(nil)
}

func TestUnpack(t *testing.T) {
	dir := t.TempDir()
	ovf := []byte("<Envelope/>")
	disk := bytes.Repeat([]byte("disk data "), 100000)
	p := filepath.Join(dir, "web.ova")
	packOVA(t, p, ovf, disk, false)
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	pkg, err := Unpack(p, out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pkg.OVF, ovf) {
		t.Errorf("descriptor %q", pkg.OVF)
	}
	// The descriptor and manifest stay in memory; the disk is extracted
	// under its own name.
	if len(pkg.Files) != 1 || pkg.Files["web-disk1.vmdk"] != filepath.Join(out, "web-disk1.vmdk") {
		t.Fatalf("files %v", pkg.Files)
	}
	if got, _ := os.ReadFile(pkg.Files["web-disk1.vmdk"]); !bytes.Equal(got, disk) {
		t.Error("the extracted disk differs from the archive's")
	}
	pkg.Remove()
	if names := ovatest.Names(t, out); len(names) != 0 {
		t.Errorf("Remove left %q", names)
	}
}

func TestUnpackRejects(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	p := filepath.Join(dir, "web.ova")
	packOVA(t, p, []byte("<Envelope/>"), bytes.Repeat([]byte{7}, 1<<20), true)
	if _, err := Unpack(p, out); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("corrupt disk: %v, want ErrDigestMismatch", err)
	}
	for name, c := range map[string]struct {
		files []ovatest.Member
		want  error
	}{
		"escape":         {[]ovatest.Member{{Name: "../evil.ovf", Data: []byte("x")}}, ErrBadArchive},
		"subdir":         {[]ovatest.Member{{Name: "a.ovf", Data: []byte("x")}, {Name: "a/b.vmdk", Data: []byte("x")}}, ErrBadArchive},
		"twice":          {[]ovatest.Member{{Name: "a.ovf", Data: []byte("x")}, {Name: "b.vmdk", Data: []byte("x")}, {Name: "b.vmdk", Data: []byte("y")}}, ErrBadArchive},
		"no ovf":         {[]ovatest.Member{{Name: "x.vmdk", Data: []byte("x")}}, ErrBadArchive},
		"bad mf":         {[]ovatest.Member{{Name: "a.ovf", Data: []byte("<Envelope/>")}, {Name: "a.mf", Data: []byte("MD5(a.ovf)= 00")}}, ErrBadArchive},
		"missing mf":     {[]ovatest.Member{{Name: "a.ovf", Data: []byte("<Envelope/>")}, {Name: "a.mf", Data: []byte(fmt.Sprintf("SHA1(b.vmdk)= %040x", 0))}}, ErrDigestMismatch},
		"bad ovf digest": {[]ovatest.Member{{Name: "a.mf", Data: []byte(fmt.Sprintf("SHA256(a.ovf)= %064x", 0))}, {Name: "a.ovf", Data: []byte("<Envelope/>")}}, ErrDigestMismatch},
	} {
		op := filepath.Join(dir, "t.ova")
		ovatest.WriteTar(t, op, c.files...)
		if _, err := Unpack(op, out); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if names := ovatest.Names(t, out); len(names) != 0 {
		t.Errorf("failed unpacks left %q", names)
	}
}

func TestParseManifest(t *testing.T) {
	m, err := parseManifest("SHA1(a.ovf)= " + strings.Repeat("AB", 20) + "\r\nSHA256 (b c.vmdk) = " + strings.Repeat("01", 32) + "\n")
	if err != nil || m["a.ovf"].Algo != "SHA1" || m["a.ovf"].Digest != strings.Repeat("ab", 20) || m["b c.vmdk"].Algo != "SHA256" {
		t.Fatalf("%+v %v", m, err)
	}
	if _, err := parseManifest("SHA256(a)= abcd"); err == nil {
		t.Fatal("short digest accepted")
	}
}

func FuzzManifest(f *testing.F) {
	f.Add("SHA256(a.vmdk)= " + strings.Repeat("0", 64))
	f.Add("SHA1(x)=" + strings.Repeat("f", 40) + "\nSHA512(y)= " + strings.Repeat("1", 128))
	f.Fuzz(func(t *testing.T, text string) {
		parseManifest(text)
	})
}
