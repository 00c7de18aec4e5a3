package parentpath_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/parentpath"
	_ "github.com/govisor/govisor/internal/diskimage/raw"
)

func TestCandidates(t *testing.T) {
	c := parentpath.For("/vm/child.vhd")
	c.Relative(`..\old\base.vhd`)
	c.Relative("")
	c.Absolute(`C:\VMs\base.vhd`) // a Windows path: nothing here
	c.Absolute("/srv/base.vhd")
	c.Recorded(`C:\VMs\base.vmdk`)
	c.Recorded("/vmfs/volumes/ds/vm/base.vmdk")
	c.Recorded("sub/base.vmdk")
	c.Beside(`C:\VMs\base.vhd`)
	c.Beside("C:base.vmdk")
	c.Beside("/srv/base.vhd") // listed already
	c.Beside(`\\?\Volume{1}\`)
	c.Beside("..")
	want := []string{"/old/base.vhd", "/srv/base.vhd", "/vmfs/volumes/ds/vm/base.vmdk", "/vm/sub/base.vmdk", "/vm/base.vhd", "/vm/base.vmdk"}
	if got := c.List(); !slices.Equal(got, want) {
		t.Errorf("candidates\n got %q\nwant %q", got, want)
	}
}

// TestOpen opens the first candidate that exists and passes the check,
// noting those that exist and fail it, and closing them.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	child := filepath.Join(dir, "child.img")
	for name, size := range map[string]int64{"small.img": 512, "big.img": 4096, "child.img": 4096} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cands := []string{filepath.Join(dir, "gone.img"), filepath.Join(dir, "small.img"), filepath.Join(dir, "big.img")}
	var checked []int64
	check := func(p diskimage.Image) string {
		checked = append(checked, p.VirtualSize())
		if p.VirtualSize() != 4096 {
			return "is too small"
		}
		return ""
	}
	f, err := parentpath.Open(child, cands, diskimage.OpenOptions{ReadOnly: true}, check)
	if err != nil || f.Image == nil {
		t.Fatalf("open: %+v, %v", f, err)
	}
	f.Image.Close()
	if f.Path != cands[2] || !slices.Equal(f.Wrong, []string{cands[1] + " is too small"}) || !slices.Equal(checked, []int64{512, 4096}) {
		t.Errorf("found %q, wrong %q, checked %v", f.Path, f.Wrong, checked)
	}

	// None passes: no error, no image, every mismatch listed.
	f, err = parentpath.Open(child, cands[:2], diskimage.OpenOptions{ReadOnly: true}, check)
	if err != nil || f.Image != nil || len(f.Wrong) != 1 {
		t.Errorf("no match: %+v, %v", f, err)
	}
	// None exists.
	f, err = parentpath.Open(child, cands[:1], diskimage.OpenOptions{ReadOnly: true}, check)
	if err != nil || f.Image != nil || len(f.Wrong) != 0 {
		t.Errorf("none there: %+v, %v", f, err)
	}
	// A candidate that exists but cannot be opened ends the search.
	f, err = parentpath.Open(child, []string{dir, cands[2]}, diskimage.OpenOptions{ReadOnly: true}, check)
	if err == nil || f.Image != nil || !strings.Contains(err.Error(), "backing") {
		t.Errorf("unopenable candidate: %+v, %v", f, err)
	}
}
