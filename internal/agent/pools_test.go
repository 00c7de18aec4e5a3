package agent

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/diskimage"
)

func TestNormalizePool(t *testing.T) {
	for _, tc := range []struct {
		in     api.Pool
		field  string
		want   api.Pool
		substr string
	}{
		{in: api.Pool{Name: "local", Path: "/srv/images/"}, want: api.Pool{Name: "local", Kind: "dir", Path: "/srv/images", Host: "h1"}},
		{in: api.Pool{Name: "nfs", Kind: "shared", Path: "/mnt/nfs"}, want: api.Pool{Name: "nfs", Kind: "shared", Path: "/mnt/nfs", Shared: true}},
		{in: api.Pool{Name: "other", Path: "/d", Host: "h2"}, want: api.Pool{Name: "other", Kind: "dir", Path: "/d", Host: "h2"}},
		{in: api.Pool{Name: "x", Path: "/d", Shared: true}, want: api.Pool{Name: "x", Kind: "dir", Path: "/d", Host: "h1"}},
		{in: api.Pool{Name: "Bad", Path: "/d"}, field: "name"},
		{in: api.Pool{Name: "x", Kind: "lvm", Path: "/d"}, field: "kind"},
		{in: api.Pool{Name: "x"}, field: "path"},
		{in: api.Pool{Name: "x", Path: "rel/dir"}, field: "path", substr: "absolute"},
		{in: api.Pool{Name: "x", Path: "/"}, field: "path"},
		{in: api.Pool{Name: "x", Path: "/a,b"}, field: "path"},
		{in: api.Pool{Name: "x", Kind: "shared", Path: "/d", Host: "h1"}, field: "host"},
	} {
		got, err := normalizePool(tc.in, "h1")
		var fe *FieldError
		switch {
		case tc.field != "":
			if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Msg, tc.substr) {
				t.Errorf("%+v: err %v, want field %s", tc.in, err, tc.field)
			}
		case err != nil:
			t.Errorf("%+v: %v", tc.in, err)
		case got != tc.want:
			t.Errorf("%+v: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestCheckVolumeCreate(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "base.raw")
	os.WriteFile(img, make([]byte, 4096), 0o644)
	p := api.Pool{Name: "p", Kind: "dir", Path: dir}
	for _, tc := range []struct {
		in    api.VolumeCreate
		field string
		size  int64
		src   string
	}{
		{in: api.VolumeCreate{Name: "a.qcow2", Size: "1G"}, size: 1 << 30},
		{in: api.VolumeCreate{Name: "a", Format: "raw", Size: "4096"}, size: 4096},
		{in: api.VolumeCreate{Name: "a", From: img}, src: img},
		{in: api.VolumeCreate{Name: "a", FromVolume: "base.raw", Format: "vmdk"}, src: img},
		{in: api.VolumeCreate{Name: ".hidden", Size: "1G"}, field: "name"},
		{in: api.VolumeCreate{Name: "a/b", Size: "1G"}, field: "name"},
		{in: api.VolumeCreate{Name: "..", Size: "1G"}, field: "name"},
		{in: api.VolumeCreate{Name: "a", Format: "iso", Size: "1G"}, field: "format"},
		{in: api.VolumeCreate{Name: "a"}, field: "size"},
		{in: api.VolumeCreate{Name: "a", Size: "1G", From: img}, field: "size"},
		{in: api.VolumeCreate{Name: "a", Size: "lots"}, field: "size"},
		{in: api.VolumeCreate{Name: "a", Size: "0"}, field: "size"},
		{in: api.VolumeCreate{Name: "a", Size: "65T"}, field: "size"},
		{in: api.VolumeCreate{Name: "a", From: "relative.img"}, field: "from"},
		{in: api.VolumeCreate{Name: "a", From: filepath.Join(dir, "nope")}, field: "from"},
		{in: api.VolumeCreate{Name: "a", FromVolume: "nope"}, field: "fromVolume"},
		{in: api.VolumeCreate{Name: "a", FromVolume: "../base.raw"}, field: "fromVolume"},
	} {
		c := tc.in
		size, src, err := checkVolumeCreate(p, &c)
		var fe *FieldError
		switch {
		case tc.field != "":
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Errorf("%+v: err %v, want field %s", tc.in, err, tc.field)
			}
		case err != nil:
			t.Errorf("%+v: %v", tc.in, err)
		case size != tc.size || src != tc.src || c.Format == "":
			t.Errorf("%+v: size %d src %q format %q", tc.in, size, src, c.Format)
		}
	}
}

// TestPools drives pools and volumes through the API: create, convert,
// import, list, a VM disk given as pool + volume, and the refusals.
func TestPools(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	os.WriteFile(kernel, []byte("not booted in this test"), 0o644)
	ta := startAgent(t, filepath.Join(dir, "state"), nil)
	defer ta.Close()
	ctx := context.Background()
	poolDir := filepath.Join(dir, "pool")

	p, err := ta.cli.CreatePool(ctx, api.Pool{Name: "local", Path: poolDir})
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != api.PoolDir || p.Host != "testhost" || p.Shared || p.CapacityBytes == 0 {
		t.Fatalf("pool %+v", p)
	}
	if fi, err := os.Stat(poolDir); err != nil || !fi.IsDir() {
		t.Fatalf("pool directory: %v", err)
	}
	shared, err := ta.cli.CreatePool(ctx, api.Pool{Name: "nfs", Kind: api.PoolShared, Path: dir})
	if err != nil || !shared.Shared || shared.Host != "" {
		t.Fatalf("shared pool %+v, %v", shared, err)
	}

	v, err := ta.cli.CreateVolume(ctx, "local", api.VolumeCreate{Name: "root.qcow2", Size: "64M"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Format != "qcow2" || v.VirtualSize != 64<<20 || v.Path != filepath.Join(poolDir, "root.qcow2") {
		t.Fatalf("volume %+v", v)
	}
	// Data written to the volume survives a conversion to another format.
	img, err := diskimage.Open(v.Path, diskimage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img.WriteAt([]byte("govisor volume data"), 1<<20)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := ta.cli.CreateVolume(ctx, "local", api.VolumeCreate{Name: "root.raw", Format: "raw", FromVolume: "root.qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(raw.Path)
	if raw.Format != "raw" || int64(len(b)) != 64<<20 || string(b[1<<20:1<<20+19]) != "govisor volume data" {
		t.Fatalf("converted volume %+v (%d bytes)", raw, len(b))
	}
	imported, err := ta.cli.CreateVolume(ctx, "local", api.VolumeCreate{Name: "imported.vhdx", Format: "vhdx", From: raw.Path})
	if err != nil || imported.Format != "vhdx" || imported.VirtualSize != 64<<20 {
		t.Fatalf("imported %+v, %v", imported, err)
	}
	vols, err := ta.cli.ListVolumes(ctx, "local")
	var names []string
	for _, v := range vols {
		names = append(names, v.Name)
	}
	if err != nil || !slices.Equal(names, []string{"imported.vhdx", "root.qcow2", "root.raw"}) {
		t.Fatalf("volumes %v, %v", names, err)
	}

	s := spec("vm1", kernel, "")
	s.Disks = []api.DiskSpec{{Pool: "local", Volume: "root.qcow2"}, {Path: raw.Path, ReadOnly: true}}
	vm, err := ta.cli.CreateVM(ctx, s, false)
	if err != nil {
		t.Fatal(err)
	}
	if vm.Spec.Disks[0].Path != v.Path {
		t.Errorf("disk path %q, want %q", vm.Spec.Disks[0].Path, v.Path)
	}
	// Applying the same definition again changes nothing.
	if _, res, err := ta.cli.ApplyVM(ctx, s); err != nil || res != "unchanged" {
		t.Errorf("apply: %s, %v", res, err)
	}
	if got, _ := ta.cli.GetVolume(ctx, "local", "root.qcow2"); !slices.Equal(got.UsedBy, []string{"vm1"}) {
		t.Errorf("usedBy %v", got.UsedBy)
	}
	vmWith := func(d api.DiskSpec) func() error {
		return func() error {
			s := spec("vm2", kernel, "")
			s.Disks = []api.DiskSpec{d}
			_, err := ta.cli.CreateVM(ctx, s, false)
			return err
		}
	}
	apiErrors(t, []apiErrorCase{
		{"pool taken", func() error { _, err := ta.cli.CreatePool(ctx, api.Pool{Name: "local", Path: "/srv/x"}); return err }, 409, "", "already exists"},
		{"path taken", func() error { _, err := ta.cli.CreatePool(ctx, api.Pool{Name: "again", Path: poolDir}); return err }, 409, "", "already storage pool local"},
		{"shared pool not mounted", func() error {
			_, err := ta.cli.CreatePool(ctx, api.Pool{Name: "gone", Kind: api.PoolShared, Path: filepath.Join(dir, "nope")})
			return err
		}, 400, "path", "no such directory"},
		{"pool unknown field", func() error {
			_, err := ta.cli.Do(ctx, http.MethodPost, "/v1/pools", strings.NewReader(`{"name":"x","path":"/x","size":1}`), nil)
			return err
		}, 400, "size", "unknown field"},
		{"get unknown pool", func() error { _, err := ta.cli.GetPool(ctx, "ghost"); return err }, 404, "", "no storage pool ghost"},
		{"volumes of unknown pool", func() error { _, err := ta.cli.ListVolumes(ctx, "ghost"); return err }, 404, "", "no storage pool ghost"},
		{"volume taken", func() error {
			_, err := ta.cli.CreateVolume(ctx, "local", api.VolumeCreate{Name: "root.raw", Size: "1M"})
			return err
		}, 409, "", "already exists"},
		{"volume without size", func() error {
			_, err := ta.cli.CreateVolume(ctx, "local", api.VolumeCreate{Name: "x"})
			return err
		}, 400, "size", "exactly one"},
		{"import a non-image", func() error {
			bad := filepath.Join(dir, "bad.qcow2")
			os.WriteFile(bad, []byte("QFI\xfbnot really"), 0o644)
			_, err := ta.cli.CreateVolume(ctx, "local", api.VolumeCreate{Name: "bad", From: bad})
			return err
		}, 400, "from", "cannot read"},
		{"get unknown volume", func() error { _, err := ta.cli.GetVolume(ctx, "local", "ghost"); return err }, 404, "", "no volume ghost"},
		{"delete unknown volume", func() error { return ta.cli.DeleteVolume(ctx, "local", "ghost") }, 404, "", "no volume ghost"},
		{"delete volume in use", func() error { return ta.cli.DeleteVolume(ctx, "local", "root.qcow2") }, 409, "", "vm1"},
		{"delete volume in use by path", func() error { return ta.cli.DeleteVolume(ctx, "local", "root.raw") }, 409, "", "vm1"},
		{"delete pool in use", func() error { return ta.cli.DeletePool(ctx, "local") }, 409, "", "vm1"},
		{"disk on unknown pool", vmWith(api.DiskSpec{Pool: "ghost", Volume: "x"}), 400, "disks[0].pool", "no storage pool"},
		{"disk on unknown volume", vmWith(api.DiskSpec{Pool: "local", Volume: "ghost"}), 400, "disks[0].volume", "no volume"},
		{"disk volume without pool", vmWith(api.DiskSpec{Volume: "root.raw"}), 400, "disks[0].pool", "required"},
		{"disk pool without volume", vmWith(api.DiskSpec{Pool: "local"}), 400, "disks[0].volume", "required"},
		{"disk path and volume disagree", vmWith(api.DiskSpec{Pool: "local", Volume: "root.raw", Path: kernel}), 400, "disks[0].path", "not volume"},
	})
	if _, err := os.Stat(filepath.Join(poolDir, "bad")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed import left a volume behind: %v", err)
	}
	if ents, _ := os.ReadDir(poolDir); len(ents) != 3 {
		t.Errorf("pool directory holds %d files, want 3 (no temporaries)", len(ents))
	}
	if _, err := ta.cli.GetVM(ctx, "vm2"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("a refused VM exists: %v", err)
	}

	if err := ta.cli.DeleteVM(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	for _, vol := range []string{"root.qcow2", "root.raw"} {
		if err := ta.cli.DeleteVolume(ctx, "local", vol); err != nil {
			t.Fatal(err)
		}
	}
	if err := ta.cli.DeletePool(ctx, "local"); err != nil {
		t.Fatal(err)
	}
	// Forgetting a pool leaves its files.
	if _, err := os.Stat(imported.Path); err != nil {
		t.Errorf("pool delete removed a volume: %v", err)
	}
	if pools, err := ta.cli.ListPools(ctx); err != nil || len(pools) != 1 || pools[0].Name != "nfs" {
		t.Errorf("pools %+v, %v", pools, err)
	}

	// Disks on the shared pool (dir) need no copy in a live migration.
	for _, tc := range []struct {
		disks []api.DiskSpec
		want  bool
	}{
		{nil, true},
		{[]api.DiskSpec{{Pool: "nfs", Volume: "a", Path: filepath.Join(dir, "a")}}, true},
		{[]api.DiskSpec{{Path: filepath.Join(dir, "pool", "b")}}, true},
		{[]api.DiskSpec{{Path: filepath.Join(dir, "a")}, {Path: "/elsewhere/b"}}, false},
		{[]api.DiskSpec{{Path: dir + "-sibling/c"}}, false},
		{[]api.DiskSpec{{Pool: "local", Volume: "x", Path: filepath.Join(poolDir, "x")}}, false},
	} {
		got, err := ta.pools.sharedStorage(ctx, api.VMSpec{Disks: tc.disks})
		if err != nil || got != tc.want {
			t.Errorf("sharedStorage(%+v) = %v, %v; want %v", tc.disks, got, err, tc.want)
		}
	}
}
