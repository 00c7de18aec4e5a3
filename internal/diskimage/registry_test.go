package diskimage_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	_ "github.com/govisor/govisor/internal/diskimage/all"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"512", 512, true}, {"1K", 1024, true}, {"1k", 1024, true},
		{"64M", 64 << 20, true}, {"20G", 20 << 30, true}, {"2T", 2 << 40, true},
		{"1.5M", 3 << 19, true}, {"10GiB", 10 << 30, true}, {"100B", 100, true},
		{"", 0, false}, {"-1", 0, false}, {"1X", 0, false}, {"G", 0, false},
		{"99999999999999999999", 0, false}, {"9000000E", 0, false},
	}
	for _, tc := range cases {
		got, err := diskimage.ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestProbeAndForce(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi"} {
		p := filepath.Join(dir, "x."+f)
		img, err := diskimage.Create(p, f, 4<<20, diskimage.CreateOptions{})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		img.Close()
		got, err := diskimage.Probe(p)
		if err != nil || got != f {
			t.Fatalf("Probe of a %s image: %q, %v", f, got, err)
		}
		img, err = diskimage.Open(p, diskimage.OpenOptions{ReadOnly: true})
		if err != nil || img.Format() != f {
			t.Fatalf("Open of a %s image: %v", f, err)
		}
		img.Close()
	}
	// Forcing raw on a qcow2 file reads its bytes.
	img, err := diskimage.Open(filepath.Join(dir, "x.qcow2"), diskimage.OpenOptions{Format: "raw", ReadOnly: true})
	if err != nil || img.Format() != "raw" {
		t.Fatalf("forced raw: %v", err)
	}
	img.Close()
}

func TestUnknownFormat(t *testing.T) {
	_, err := diskimage.Create(filepath.Join(t.TempDir(), "a"), "foo", 1, diskimage.CreateOptions{})
	if !errors.Is(err, diskimage.ErrUnknownFormat) {
		t.Fatalf("error %v is not ErrUnknownFormat", err)
	}
	want := `unknown format "foo": use one of raw, qcow2, vmdk, vhd, vhdx, vdi`
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := diskimage.Open(filepath.Join(t.TempDir(), "none"), diskimage.OpenOptions{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestResolveBacking(t *testing.T) {
	cases := []struct{ parent, backing, want string }{
		{"/a/b/top.qcow2", "base.qcow2", "/a/b/base.qcow2"},
		{"/a/b/top.qcow2", "../base.qcow2", "/a/base.qcow2"},
		{"/a/b/top.qcow2", "/x/base.qcow2", "/x/base.qcow2"},
		{"top.qcow2", "base.qcow2", "base.qcow2"},
	}
	for _, tc := range cases {
		if got := diskimage.ResolveBacking(tc.parent, tc.backing); got != tc.want {
			t.Errorf("ResolveBacking(%q, %q) = %q, want %q", tc.parent, tc.backing, got, tc.want)
		}
	}
}

func TestInfoOf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "i.raw")
	img, _ := diskimage.Create(p, "raw", 3<<20, diskimage.CreateOptions{})
	img.WriteAt([]byte(strings.Repeat("x", 9000)), 1<<20)
	img.Close()
	info, err := diskimage.InfoOf(p, "")
	if err != nil || info.Format != "raw" || info.VirtualSize != 3<<20 || info.ActualSize == 0 || info.ActualSize >= 3<<20 {
		t.Fatalf("InfoOf: %+v, %v", info, err)
	}
}

// TestDriverErrorsGiveNilImage: a driver's failed open or create gives a
// nil Image, not one holding a nil pointer (OpenAs, CreateAs).
func TestDriverErrorsGiveNilImage(t *testing.T) {
	dir := t.TempDir()
	for _, f := range diskimage.Formats() {
		img, err := diskimage.Open(filepath.Join(dir, "missing."+f), diskimage.OpenOptions{Format: f, ReadOnly: true})
		if err == nil || img != nil {
			t.Errorf("%s: open of a missing file: %#v, %v", f, img, err)
		}
		img, err = diskimage.Create(filepath.Join(dir, "x."+f), f, 1<<20, diskimage.CreateOptions{Options: map[string]string{"no_such_option": "1"}})
		if err == nil || img != nil {
			t.Errorf("%s: create with a bad option: %#v, %v", f, img, err)
		}
	}
}
