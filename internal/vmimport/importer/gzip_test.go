package importer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/govisor/govisor/internal/diskimage/ova"
	"github.com/govisor/govisor/internal/vmimport"
	"github.com/govisor/govisor/internal/vmimport/exporter"
)

// TestImportGzipOVF: an OVF whose disk files are gzip-compressed
// (compression="gzip" on their File, as OVF tools may write them) imports
// with the same data; the expanded copies do not stay behind.
func TestImportGzipOVF(t *testing.T) {
	dir := t.TempDir()
	d0 := pattern(3*mib, 7)
	makeImage(t, filepath.Join(dir, "a.raw"), "raw", d0, nil)
	ovaPath := filepath.Join(dir, "z.ova")
	vm := &vmimport.VM{Name: "z", CPUs: 1, MemoryMiB: 128, Firmware: vmimport.FirmwareBIOS}
	if err := exporter.Export(context.Background(), exporter.Options{VM: vm, Images: []string{filepath.Join(dir, "a.raw")}, Out: ovaPath}); err != nil {
		t.Fatal(err)
	}
	pkgDir := filepath.Join(dir, "pkg")
	os.Mkdir(pkgDir, 0o755)
	pkg, err := ova.Unpack(ovaPath, pkgDir)
	if err != nil {
		t.Fatal(err)
	}
	text := string(pkg.OVF)
	for name, p := range pkg.Files {
		if !strings.HasSuffix(name, ".vmdk") {
			continue
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(raw)
		zw.Close()
		if err := os.WriteFile(filepath.Join(pkgDir, name+".gz"), z.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		// The File element: its href to the compressed member, with the
		// attribute that says so.
		re := regexp.MustCompile(`href="` + regexp.QuoteMeta(name) + `"`)
		text = re.ReplaceAllString(text, `href="`+name+`.gz" ovf:compression="gzip"`)
	}
	if !strings.Contains(text, `compression="gzip"`) {
		t.Fatalf("no disk file in the descriptor:\n%s", text)
	}
	ovfPath := filepath.Join(pkgDir, "z.ovf")
	if err := os.WriteFile(ovfPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res := importOK(t, Options{Source: "ovf", Path: ovfPath, OutDir: out})
	if len(res.Disks) != 1 || !bytes.Equal(readImage(t, res.Disks[0]), d0) {
		t.Fatalf("disks %q do not hold the exported data", res.Disks)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 1 {
		t.Errorf("the output folder holds %d entries, want the disk only (the expanded copy is removed)", len(ents))
	}
}

// TestGunzipBounded: a gzip file that expands past the bound is refused.
func TestGunzipBounded(t *testing.T) {
	dir := t.TempDir()
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	in := filepath.Join(dir, "bomb.gz")
	os.WriteFile(in, z.Bytes(), 0o644)
	if err := gunzip(in, filepath.Join(dir, "out"), 1000); err == nil || !strings.Contains(err.Error(), "more than 1000 bytes") {
		t.Errorf("gunzip past the bound: %v", err)
	}
	if err := gunzip(in, filepath.Join(dir, "out2"), 1<<20); err != nil {
		t.Errorf("gunzip within the bound: %v", err)
	}
}
