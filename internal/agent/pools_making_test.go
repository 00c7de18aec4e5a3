package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/api"
)

// TestVolumeBeingMade: a volume the agent is converting is listed and read
// with its progress (the console's import progress bar, issue 14), cannot
// be deleted or made twice meanwhile, and once done it is listed as its
// file only.
func TestVolumeBeingMade(t *testing.T) {
	dir := t.TempDir()
	ta := startAgent(t, filepath.Join(dir, "state"), nil)
	defer ta.Close()
	ctx := context.Background()
	poolDir := filepath.Join(dir, "pool")
	if _, err := ta.cli.CreatePool(ctx, api.Pool{Name: "local", Path: poolDir}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "image.raw")
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	m, done, err := ta.pools.startMaking(api.Volume{Name: "big.qcow2", Pool: "local", Path: filepath.Join(poolDir, "big.qcow2"), Format: "qcow2", VirtualSize: 8 << 20}, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	m.progress(3<<20, 8<<20)
	l, err := ta.cli.ListVolumes(ctx, "local")
	if err != nil || len(l) != 1 || l[0].Name != "big.qcow2" || l[0].Progress == nil || *l[0].Progress != (api.VolumeProgress{DoneBytes: 3 << 20, TotalBytes: 8 << 20}) {
		t.Fatalf("volumes while one is made: %+v, %v", l, err)
	}
	if v, err := ta.cli.GetVolume(ctx, "local", "big.qcow2"); err != nil || v.Progress == nil || v.Progress.DoneBytes != 3<<20 {
		t.Fatalf("the volume being made: %+v, %v", v, err)
	}
	err = ta.cli.DeleteVolume(ctx, "local", "big.qcow2")
	wantAPIError(t, "delete while made", err, 409, "", "still being made")
	_, err = ta.cli.CreateVolume(ctx, "local", api.VolumeCreate{Name: "big.qcow2", From: img})
	wantAPIError(t, "made twice", err, 409, "", "being made")
	done()
	if l, err := ta.cli.ListVolumes(ctx, "local"); err != nil || len(l) != 0 {
		t.Fatalf("volumes once the making ended (no file: it failed): %+v, %v", l, err)
	}
	// A real import: listed without progress once it is in place.
	v, err := ta.cli.CreateVolume(ctx, "local", api.VolumeCreate{Name: "big.qcow2", From: img})
	if err != nil || v.Progress != nil || v.VirtualSize != 4<<20 {
		t.Fatalf("import: %+v, %v", v, err)
	}
	if _, busy := ta.pools.makingOne("local", "big.qcow2"); busy {
		t.Error("the finished import is still listed as being made")
	}
}
