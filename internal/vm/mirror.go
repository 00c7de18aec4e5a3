package vm

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/migration"
	"github.com/govisor/govisor/internal/virtio/blk"
)

// Disk mirroring for live migration without shared storage (what QEMU's
// drive-mirror and vSphere's Storage vMotion do): the migration engine
// copies every disk block while the guest runs, then the blocks the guest
// wrote since, in the same rounds as memory. The VMM sees every guest write
// (virtio-blk is emulated here), so a wrapper around each image records
// them; nothing is tracked outside a migration.

// dirtyBlocks records which migration.DiskBlockSize blocks of one disk were
// written while tracking is on.
type dirtyBlocks struct {
	on   atomic.Bool
	mu   sync.Mutex // guards words' replacement, not the bits
	bits []atomic.Uint64
	size int64
}

// mark records a completed write of [off, off+n). It runs after the write
// so that a block read by the migration before the write lands is sent
// again in the next round.
func (d *dirtyBlocks) mark(off, n int64) {
	if !d.on.Load() || n <= 0 || off < 0 {
		return
	}
	d.mu.Lock()
	bits := d.bits
	d.mu.Unlock()
	first := uint64(off) / migration.DiskBlockSize
	last := uint64(off+n-1) / migration.DiskBlockSize
	for b := first; b <= last && b/64 < uint64(len(bits)); b++ {
		bits[b/64].Or(1 << (b % 64))
	}
}

// take returns and clears the bitmap, starting tracking on the first call.
func (d *dirtyBlocks) take() []uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	words := (uint64(d.size) + migration.DiskBlockSize*64 - 1) / (migration.DiskBlockSize * 64)
	if d.bits == nil {
		d.bits = make([]atomic.Uint64, words)
	}
	d.on.Store(true)
	out := make([]uint64, len(d.bits))
	for i := range d.bits {
		out[i] = d.bits[i].Swap(0)
	}
	return out
}

// stop ends tracking and frees the bitmap.
func (d *dirtyBlocks) stop() {
	d.on.Store(false)
	d.mu.Lock()
	d.bits = nil
	d.mu.Unlock()
}

// trackedImage is an image whose writes are recorded in a dirtyBlocks.
type trackedImage struct {
	diskimage.Image
	dirty *dirtyBlocks
}

func (t *trackedImage) WriteAt(p []byte, off int64) (int, error) {
	n, err := t.Image.WriteAt(p, off)
	t.dirty.mark(off, int64(n))
	return n, err
}

// ReadvAt and WritevAt give every tracked image blk.VectorIO: the inner
// image's when it has one, else one ReadAt or WriteAt per buffer, as the
// device would do itself.
func (t *trackedImage) ReadvAt(bufs [][]byte, off int64) (int, error) {
	if v, ok := t.Image.(blk.VectorIO); ok {
		return v.ReadvAt(bufs, off)
	}
	done := 0
	for _, b := range bufs {
		n, err := t.Image.ReadAt(b, off+int64(done))
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func (t *trackedImage) WritevAt(bufs [][]byte, off int64) (int, error) {
	var n int
	var err error
	if v, ok := t.Image.(blk.VectorIO); ok {
		n, err = v.WritevAt(bufs, off)
	} else {
		for _, b := range bufs {
			k, werr := t.Image.WriteAt(b, off+int64(n))
			n += k
			if err = werr; err != nil {
				break
			}
		}
	}
	t.dirty.mark(off, int64(n))
	return n, err
}

// The virtio-blk device offers discard and write-zeroes only when the image
// can do them, so each combination gets its own type.
type (
	trackedDiscard     struct{ *trackedImage }
	trackedZero        struct{ *trackedImage }
	trackedDiscardZero struct{ *trackedImage }
)

var (
	_ blk.VectorIO   = &trackedImage{}
	_ blk.Discarder  = trackedDiscard{}
	_ blk.ZeroWriter = trackedZero{}
	_ blk.Discarder  = trackedDiscardZero{}
	_ blk.ZeroWriter = trackedDiscardZero{}
)

func (t *trackedImage) discard(off, n int64) error {
	err := t.Image.(blk.Discarder).Discard(off, n)
	t.dirty.mark(off, n)
	return err
}

func (t *trackedImage) writeZeroes(off, n int64, unmap bool) error {
	err := t.Image.(blk.ZeroWriter).WriteZeroes(off, n, unmap)
	t.dirty.mark(off, n)
	return err
}

func (t trackedDiscard) Discard(off, n int64) error     { return t.discard(off, n) }
func (t trackedDiscardZero) Discard(off, n int64) error { return t.discard(off, n) }
func (t trackedZero) WriteZeroes(off, n int64, unmap bool) error {
	return t.writeZeroes(off, n, unmap)
}
func (t trackedDiscardZero) WriteZeroes(off, n int64, unmap bool) error {
	return t.writeZeroes(off, n, unmap)
}

// track wraps img so that its writes can be tracked for mirroring; the
// wrapper offers exactly the optional interfaces img has.
func track(img diskimage.Image) (diskimage.Image, *dirtyBlocks) {
	d := &dirtyBlocks{size: img.VirtualSize()}
	t := &trackedImage{Image: img, dirty: d}
	_, dc := img.(blk.Discarder)
	_, zw := img.(blk.ZeroWriter)
	switch {
	case dc && zw:
		return trackedDiscardZero{t}, d
	case dc:
		return trackedDiscard{t}, d
	case zw:
		return trackedZero{t}, d
	}
	return t, d
}

// mirroringSource is a migration source that also mirrors every disk
// (migration.DiskSource): the boot disks in --disk order, then the
// hot-plugged ones in the order they were attached (as Disks lists them),
// so the destination's --disk targets come in that order too.
type mirroringSource struct {
	*migrationSource
}

// mirrorDisk is one disk a mirroring migration copies.
type mirrorDisk struct {
	img   diskimage.Image
	dirty *dirtyBlocks
	hot   *hotDisk // nil for a boot disk
}

// mirrorList returns the disks the running mirror copies, fixing the list
// on the first call: attach and detach are refused until stopDiskTracking.
func (m *Machine) mirrorList() []mirrorDisk {
	m.hp.mu.Lock()
	defer m.hp.mu.Unlock()
	if m.hp.mirror == nil {
		list := make([]mirrorDisk, 0, len(m.images))
		for i, img := range m.images {
			list = append(list, mirrorDisk{img: img, dirty: m.diskDirty[i]})
		}
		for _, hd := range m.hotDisks() {
			list = append(list, mirrorDisk{img: hd.img, dirty: hd.dirty, hot: hd})
		}
		m.hp.mirror = list
	}
	return m.hp.mirror
}

// diskCount returns how many disks the machine has, hot-plugged included.
func (m *Machine) diskCount() int {
	m.hp.mu.Lock()
	defer m.hp.mu.Unlock()
	return len(m.images) + len(m.hotDisks())
}

func (s mirroringSource) Disks() []int64 {
	list := s.m.mirrorList()
	out := make([]int64, len(list))
	for i, d := range list {
		out[i] = d.img.VirtualSize()
	}
	return out
}

func (s mirroringSource) disk(disk int) (mirrorDisk, error) {
	list := s.m.mirrorList()
	if disk < 0 || disk >= len(list) {
		return mirrorDisk{}, fmt.Errorf("vm: mirror: no disk %d", disk)
	}
	return list[disk], nil
}

func (s mirroringSource) ReadDisk(disk int, off int64, p []byte) error {
	d, err := s.disk(disk)
	if err != nil {
		return err
	}
	_, err = d.img.ReadAt(p, off)
	return err
}

func (s mirroringSource) DirtyDiskBlocks(disk int) ([]uint64, error) {
	d, err := s.disk(disk)
	if err != nil {
		return nil, err
	}
	return d.dirty.take(), nil
}

// deferClose keeps the image of a disk the guest ejects during a mirroring
// migration open until the migration ends, since the mirror may be reading
// it (hp.mu held); the migration then fails, as the destination is given a
// target for it. It reports whether it did.
func (m *Machine) deferClose(hd *hotDisk) bool {
	for i, d := range m.hp.mirror {
		if d.hot == hd {
			m.hp.mirror[i].hot = nil
			m.hp.ejected = append(m.hp.ejected, hd)
			return true
		}
	}
	return false
}

// stopDiskTracking ends write tracking on every disk and lets disks be
// attached and detached again.
func (m *Machine) stopDiskTracking() {
	m.hp.mu.Lock()
	list, ejected := m.hp.mirror, m.hp.ejected
	m.hp.mirror, m.hp.ejected = nil, nil
	m.hp.mu.Unlock()
	for _, d := range list {
		d.dirty.stop()
	}
	for _, hd := range ejected {
		hd.close()
	}
}

// mirrorDest receives mirrored disks into images of its own (the
// destination VMM's --disk paths), which must be blank and of the source's
// sizes (migration.DiskDestination).
type mirrorDest struct {
	*migrationDest
	imgs  []diskimage.Image
	sizes []int64
	seen  bool // the source announced mirrored disks
}

// openMirrorTargets opens the destination's disks for writing and checks
// that they read as zeros, as the migration protocol assumes.
func openMirrorTargets(disks []Disk) (imgs []diskimage.Image, sizes []int64, err error) {
	defer func() {
		if err != nil {
			for _, img := range imgs {
				img.Close()
			}
			imgs, sizes = nil, nil
		}
	}()
	for _, d := range disks {
		img, err := diskimage.Open(d.Path, diskimage.OpenOptions{Format: d.Format})
		if err != nil {
			return imgs, nil, fmt.Errorf("vm: mirror target disk %s: %w", d.Path, err)
		}
		imgs = append(imgs, img)
		sizes = append(sizes, img.VirtualSize())
		if mp, ok := img.(diskimage.Mapper); ok {
			ext, err := mp.Map(0, img.VirtualSize())
			if err != nil {
				return imgs, nil, fmt.Errorf("vm: mirror target disk %s: %w", d.Path, err)
			}
			for _, e := range ext {
				if !e.Zero {
					return imgs, nil, fmt.Errorf("vm: mirror target disk %s holds data at %#x: give a fresh image "+
						"of the source disk's size (govisor image create), the migration copies the disk into it", d.Path, e.Offset)
				}
			}
		}
	}
	return imgs, sizes, nil
}

func (d *mirrorDest) Disks() []int64 { d.seen = true; return d.sizes }

func (d *mirrorDest) WriteDisk(disk int, off int64, p []byte) error {
	if disk < 0 || disk >= len(d.imgs) {
		return fmt.Errorf("vm: mirror: no disk %d", disk)
	}
	_, err := d.imgs[disk].WriteAt(p, off)
	return err
}

// Commit makes the mirrored data durable, hands the images over to the
// machine's own disks (the destination's paths, the source's device
// settings) and loads the state.
func (d *mirrorDest) Commit(state []byte) error {
	if !d.seen {
		return fmt.Errorf("vm: the destination was given disks (mirror targets) but the source does not mirror its disks: " +
			"migrate with disk mirroring, or start the destination without disks when both hosts share the disks")
	}
	if err := d.closeTargets(); err != nil {
		return err
	}
	state, boot, err := retargetHotDisks(state, d.cfg.Disks)
	if err != nil {
		return err
	}
	return d.migrationDest.commit(state, boot)
}

// retargetHotDisks points the source's hot-plugged disks in state at their
// mirror targets: targets holds one per source disk, the boot disks' first
// (returned for commit), then the hot-plugged ones' in attach order. Only
// a state with hot-plugged disks is re-encoded.
func retargetHotDisks(state []byte, targets []Disk) ([]byte, []Disk, error) {
	var ms migrationState
	if err := decodeMigrationState(state, &ms); err != nil {
		return nil, nil, err
	}
	boot, hot := len(ms.Config.Disks), ms.Machine.Hotplug.Disks
	if len(targets) != boot+len(hot) {
		return nil, nil, fmt.Errorf("vm: the source mirrors %d disks (%d plugged at boot, %d hot-plugged), the destination was given %d: "+
			"give one disk target per source disk, the hot-plugged ones last in the order they were attached", boot+len(hot), boot, len(hot), len(targets))
	}
	if len(hot) == 0 {
		return state, targets, nil
	}
	for i := range hot {
		t := targets[boot+i]
		hot[i].Disk.Path, hot[i].Disk.Format = t.Path, t.Format
	}
	return encodeMigrationState(nil, &ms), targets[:boot], nil
}

// closeTargets flushes and closes the mirror targets.
func (d *mirrorDest) closeTargets() error {
	var first error
	for _, img := range d.imgs {
		if err := img.Close(); err != nil && first == nil {
			first = fmt.Errorf("vm: mirror: flush target disk: %w", err)
		}
	}
	d.imgs = nil
	return first
}
