package ova

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type tarFile struct {
	name string
	data []byte
}

func writeTar(t *testing.T, path string, files []tarFile) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg})
		tw.Write(f.data)
	}
	tw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

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
	writeTar(t, path, []tarFile{{"web.ovf", ovf}, {"web.mf", []byte(mf)}, {"web-disk1.vmdk", disk}})
}

func sha1Sum(b []byte) []byte {
	h := newHash("SHA1")
	h.Write(b)
	return h.Sum(nil)
}

// leftovers lists the files in dir: what a failed or removed unpack must
// not leave.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
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
	if names := leftovers(t, out); len(names) != 0 {
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
		files []tarFile
		want  error
	}{
		"escape":         {[]tarFile{{"../evil.ovf", []byte("x")}}, ErrBadArchive},
		"subdir":         {[]tarFile{{"a.ovf", []byte("x")}, {"a/b.vmdk", []byte("x")}}, ErrBadArchive},
		"twice":          {[]tarFile{{"a.ovf", []byte("x")}, {"b.vmdk", []byte("x")}, {"b.vmdk", []byte("y")}}, ErrBadArchive},
		"no ovf":         {[]tarFile{{"x.vmdk", []byte("x")}}, ErrBadArchive},
		"bad mf":         {[]tarFile{{"a.ovf", []byte("<Envelope/>")}, {"a.mf", []byte("MD5(a.ovf)= 00")}}, ErrBadArchive},
		"missing mf":     {[]tarFile{{"a.ovf", []byte("<Envelope/>")}, {"a.mf", []byte(fmt.Sprintf("SHA1(b.vmdk)= %040x", 0))}}, ErrDigestMismatch},
		"bad ovf digest": {[]tarFile{{"a.mf", []byte(fmt.Sprintf("SHA256(a.ovf)= %064x", 0))}, {"a.ovf", []byte("<Envelope/>")}}, ErrDigestMismatch},
	} {
		op := filepath.Join(dir, "t.ova")
		writeTar(t, op, c.files)
		if _, err := Unpack(op, out); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if names := leftovers(t, out); len(names) != 0 {
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
