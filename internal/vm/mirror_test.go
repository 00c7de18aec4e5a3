package vm

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/migration"
)

const mirrorDiskSize = 8 << 20

// newImage creates an image and fills the given blocks with pattern bytes,
// returning the disk's expected content.
func newImage(t *testing.T, path, format string, blocks []int64) []byte {
	t.Helper()
	img, err := diskimage.Create(path, format, mirrorDiskSize, diskimage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	want := make([]byte, mirrorDiskSize)
	for _, b := range blocks {
		writeBlock(t, img, want, b*migration.DiskBlockSize, byte(b+1))
	}
	return want
}

// writeBlock writes 4 KiB of v at off to img and to the model.
func writeBlock(t *testing.T, img diskimage.Image, model []byte, off int64, v byte) {
	t.Helper()
	p := bytes.Repeat([]byte{v}, 4096)
	if _, err := img.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
	copy(model[off:], p)
}

// TestMigrationMirrorsDisks migrates a busy guest with a qcow2 disk to a
// destination with a blank raw disk while the disk is written to: before
// the full copy, during it, and between rounds. The destination's disk ends
// up with exactly the source's content.
func TestMigrationMirrorsDisks(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	srcPath, dstPath := filepath.Join(dir, "src.qcow2"), filepath.Join(dir, "dst.raw")
	model := newImage(t, srcPath, "qcow2", []int64{0, 3, 100})
	newImage(t, dstPath, "raw", nil)

	m, err := New(Config{CPUs: 1, MemoryMiB: 64, Flat: &Flat{Code: countingGuest(), Addr: flatAddr}, DebugExit: true,
		Disks: []Disk{{Path: srcPath}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, m, 1000)

	conn, dest := incomingLoopback(t, Config{MemoryMiB: 64, DebugExit: true, Disks: []Disk{{Path: dstPath}}})
	// A writer races the full copy; the first progress report (after the
	// full copy, before the next dirty bitmap) writes more, so those blocks
	// must travel in a later round.
	rng := rand.New(rand.NewPCG(1, 2))
	img := m.images[0]
	writerDone := make(chan []int64, 1)
	go func() {
		var offs []int64
		for i := range 64 {
			off := rng.Int64N(mirrorDiskSize/4096) * 4096
			if _, err := img.WriteAt(bytes.Repeat([]byte{byte(0x80 + i)}, 4096), off); err != nil {
				t.Error(err)
			}
			offs = append(offs, off)
		}
		writerDone <- offs
	}()
	rounds := 0
	opts := migration.Options{MaxDowntime: 50 * time.Millisecond, Progress: func(p migration.Progress) {
		// Round 0 is the full copy; from round 1 on, only the dirty
		// tracking can bring these writes across.
		if p.Paused || p.Round < 1 || rounds > 0 {
			return
		}
		rounds++
		for i, off := range <-writerDone {
			copy(model[off:], bytes.Repeat([]byte{byte(0x80 + i)}, 4096))
		}
		for b := int64(0); b < 4; b++ {
			writeBlock(t, img, model, (b*17+5)*migration.DiskBlockSize+512, byte(0x40+b))
		}
	}}
	stats, err := m.MigrateMirroringTo(context.Background(), conn, opts)
	conn.Close()
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	r := <-dest
	if r.err != nil {
		t.Fatalf("incoming: %v", r.err)
	}
	t.Logf("rounds %d, %d disk blocks, %d bytes, downtime %v", stats.Rounds, stats.DiskBlocks, stats.BytesSent, stats.Downtime)
	if ex := waitExit(t, m); ex.Reason != ExitMigrated {
		t.Fatalf("source exit %v, want migrated", ex.Reason)
	}
	if err := r.m.Start(); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, r.m, counter(r.m)+1000)
	r.m.Stop(Exit{Reason: ExitHost})
	r.m.Wait()
	r.m.Close()
	got, err := diskimage.Open(dstPath, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.Format() != "raw" {
		t.Fatalf("destination disk became %s", got.Format())
	}
	buf := make([]byte, mirrorDiskSize)
	if _, err := got.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < mirrorDiskSize; off += 4096 {
		if !bytes.Equal(buf[off:off+4096], model[off:off+4096]) {
			t.Fatalf("destination disk differs from the source at %#x: %x..., want %x...", off, buf[off:off+8], model[off:off+8])
		}
	}
}

// TestMirrorTargetChecks refuses a destination whose disk holds data, and
// one given a disk when the source does not mirror.
func TestMirrorTargetChecks(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	used := filepath.Join(dir, "used.qcow2")
	newImage(t, used, "qcow2", []int64{2})
	if _, _, err := openMirrorTargets([]Disk{{Path: used}}); err == nil || !strings.Contains(err.Error(), "holds data") {
		t.Fatalf("non-blank target: %v", err)
	}
	blank := filepath.Join(dir, "blank.qcow2")
	newImage(t, blank, "qcow2", nil)

	m := newFlat(t, 1, countingGuest(), nil)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { m.Stop(Exit{Reason: ExitHost}); m.Wait() }()
	src, dst := net.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := Incoming(context.Background(), dst, Config{MemoryMiB: 64, DebugExit: true, Disks: []Disk{{Path: blank}}})
		dst.Close()
		errc <- err
	}()
	_, err := m.MigrateTo(context.Background(), src, migration.Options{MaxDowntime: 50 * time.Millisecond})
	src.Close()
	if err == nil {
		t.Fatal("migration into a destination expecting mirrored disks succeeded")
	}
	if derr := <-errc; derr == nil || !strings.Contains(derr.Error(), "does not mirror") {
		t.Fatalf("destination error %v", derr)
	}
	before := counter(m)
	waitCounter(t, m, before+1000) // the source runs on
}

// TestTrackedImage checks which writes mark which blocks, and that the
// wrapper offers the same optional interfaces as the image.
func TestTrackedImage(t *testing.T) {
	dir := t.TempDir()
	for _, format := range []string{"raw", "qcow2", "vmdk"} {
		path := filepath.Join(dir, "d."+format)
		newImage(t, path, format, nil)
		img, err := diskimage.Open(path, diskimage.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer img.Close()
		tr, dirty := track(img)
		for _, iface := range []struct {
			name string
			has  func(any) bool
		}{
			{"Discarder", func(v any) bool { _, ok := v.(interface{ Discard(int64, int64) error }); return ok }},
			{"ZeroWriter", func(v any) bool {
				_, ok := v.(interface {
					WriteZeroes(int64, int64, bool) error
				})
				return ok
			}},
		} {
			if iface.has(img) != iface.has(tr) {
				t.Errorf("%s: image has %s %v, wrapper %v", format, iface.name, iface.has(img), iface.has(tr))
			}
		}
		tr.WriteAt([]byte{1}, 0) // before tracking starts: not recorded
		if bm := dirty.take(); bm[0] != 0 {
			t.Fatalf("%s: write before tracking recorded: %#x", format, bm[0])
		}
		const B = migration.DiskBlockSize
		tr.WriteAt(make([]byte, 2), 3*B-1) // straddles blocks 2 and 3
		if d, ok := tr.(interface{ Discard(int64, int64) error }); ok {
			d.Discard(5*B, B)
		}
		if z, ok := tr.(interface {
			WriteZeroes(int64, int64, bool) error
		}); ok {
			z.WriteZeroes(7*B, 1, false)
		}
		want := uint64(1<<2 | 1<<3)
		if _, ok := tr.(interface{ Discard(int64, int64) error }); ok {
			want |= 1 << 5
		}
		if _, ok := tr.(interface {
			WriteZeroes(int64, int64, bool) error
		}); ok {
			want |= 1 << 7
		}
		if bm := dirty.take(); bm[0] != want {
			t.Errorf("%s: dirty blocks %#b, want %#b", format, bm[0], want)
		}
		if bm := dirty.take(); bm[0] != 0 {
			t.Errorf("%s: take did not clear: %#b", format, bm[0])
		}
		dirty.stop()
		tr.WriteAt([]byte{1}, 9*B)
		if bm := dirty.take(); bm[0] != 0 {
			t.Errorf("%s: write after stop recorded: %#b", format, bm[0])
		}
	}
}

// TestPrebuiltDestinationSharedDisk migrates a guest whose disk is on
// storage both sides share to a destination built before the migration
// (--cpus given): it gives up its early machine and builds one around the
// received memory with the source's disk.
func TestPrebuiltDestinationSharedDisk(t *testing.T) {
	kvmtest.Require(t)
	shared := filepath.Join(t.TempDir(), "shared.qcow2")
	newImage(t, shared, "qcow2", []int64{1})
	m, err := New(Config{CPUs: 1, MemoryMiB: 64, Flat: &Flat{Code: countingGuest(), Addr: flatAddr}, DebugExit: true,
		Disks: []Disk{{Path: shared}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, m, 1000)
	conn, dest := incomingLoopback(t, Config{MemoryMiB: 64, CPUs: 1, DebugExit: true})
	if _, err := m.MigrateTo(context.Background(), conn, migration.Options{MaxDowntime: 50 * time.Millisecond}); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	conn.Close()
	r := <-dest
	if r.err != nil {
		t.Fatalf("incoming: %v", r.err)
	}
	defer r.m.Close()
	if d := r.m.Config().Disks; len(d) != 1 || d[0].Path != shared {
		t.Fatalf("destination disks %+v, want the shared %s", d, shared)
	}
	last := counter(m)
	if got := counter(r.m); got != last {
		t.Fatalf("destination counter %d, source stopped at %d", got, last)
	}
	if err := r.m.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { r.m.Stop(Exit{Reason: ExitHost}); r.m.Wait() }()
	waitCounter(t, r.m, last+1000)
}
