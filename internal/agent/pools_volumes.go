package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/diskimage"
	_ "github.com/govisor/govisor/internal/diskimage/all" // every format driver
	"github.com/govisor/govisor/internal/diskimage/convert"
)

// volRE is a volume's (file) name in its pool's directory: no separators,
// no leading dot (the agent's temporary files start with one).
var volRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// maxVolumeSize bounds a new volume (64 TiB): the metadata some formats
// allocate up front grows with the size.
const maxVolumeSize = 64 << 40

const defaultVolumeFormat = "qcow2"

// localPool reads a pool whose files this host has; a dir pool of another
// host is ErrNotHere (421: ask that host's agent).
func (ps *poolService) localPool(ctx context.Context, name string) (api.Pool, error) {
	p, err := ps.st.GetPool(ctx, name)
	if err != nil {
		return p, err
	}
	if !ps.local(p) {
		return p, errf(ErrNotHere, "storage pool %s is a directory on host %s; ask that host's agent", name, p.Host)
	}
	return p, nil
}

// volumeUsers lists the VMs with a disk on the volume at path of pool.
func volumeUsers(recs []store.Record, pool, vol, path string) []string {
	return vmsUsing(recs, func(s api.VMSpec) bool {
		for _, d := range s.Disks {
			if (d.Pool == pool && d.Volume == vol) || filepath.Clean(d.Path) == path {
				return true
			}
		}
		return false
	})
}

// describeVolume reads a volume's format and sizes from its file.
func describeVolume(p api.Pool, name string) (api.Volume, error) {
	path := filepath.Join(p.Path, name)
	v := api.Volume{Name: name, Pool: p.Name, Path: path}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) || (err == nil && !fi.Mode().IsRegular()) {
		return v, errf(store.ErrNotFound, "no volume %s in storage pool %s", name, p.Name)
	}
	if err != nil {
		return v, fmt.Errorf("agent: volume %s: %w", name, err)
	}
	info, err := diskimage.InfoOf(path, "")
	if err != nil {
		// Listed all the same: a user must be able to see and delete it.
		v.Format, v.ActualSize = "unreadable: "+err.Error(), diskimage.ActualSize(path)
		return v, nil
	}
	v.Format, v.VirtualSize, v.ActualSize = info.Format, info.VirtualSize, info.ActualSize
	return v, nil
}

// ListVolumes lists the volumes of a pool whose files are on this host.
func (ps *poolService) ListVolumes(ctx context.Context, pool string) (api.VolumeList, error) {
	p, err := ps.localPool(ctx, pool)
	var recs []store.Record
	if err == nil {
		recs, _, err = ps.st.ListVMs(ctx)
	}
	if err != nil {
		return api.VolumeList{}, err
	}
	ents, err := os.ReadDir(p.Path)
	if err != nil {
		return api.VolumeList{}, fmt.Errorf("agent: read storage pool %s: %w", p.Name, err)
	}
	out := api.VolumeList{Items: []api.Volume{}}
	for _, e := range ents {
		if !e.Type().IsRegular() || !volRE.MatchString(e.Name()) {
			continue
		}
		v, err := describeVolume(p, e.Name())
		if err != nil {
			continue // removed while listing
		}
		v.UsedBy = volumeUsers(recs, p.Name, v.Name, v.Path)
		out.Items = append(out.Items, v)
	}
	out.Items = append(out.Items, ps.makingIn(p.Name)...)
	return out, nil
}

// GetVolume reads one volume of a pool whose files are on this host.
func (ps *poolService) GetVolume(ctx context.Context, pool, vol string) (api.Volume, error) {
	p, err := ps.localPool(ctx, pool)
	if err == nil && !volRE.MatchString(vol) {
		err = errf(store.ErrNotFound, "no volume %q in storage pool %s", vol, p.Name)
	}
	var v api.Volume
	if err == nil {
		if mv, ok := ps.makingOne(p.Name, vol); ok {
			return mv, nil
		}
		v, err = describeVolume(p, vol)
	}
	var recs []store.Record
	if err == nil {
		recs, _, err = ps.st.ListVMs(ctx)
	}
	if err != nil {
		return api.Volume{}, err
	}
	v.UsedBy = volumeUsers(recs, p.Name, v.Name, v.Path)
	return v, nil
}

// DeleteVolume removes a volume no VM uses from a pool on this host.
func (ps *poolService) DeleteVolume(ctx context.Context, pool, vol string) error {
	p, err := ps.localPool(ctx, pool)
	if err == nil && !volRE.MatchString(vol) {
		err = errf(store.ErrNotFound, "no volume %q in storage pool %s", vol, p.Name)
	}
	var v api.Volume
	if err == nil {
		if _, ok := ps.makingOne(p.Name, vol); ok {
			return errf(ErrBusy, "volume %s of storage pool %s is still being made", vol, p.Name)
		}
		v, err = describeVolume(p, vol)
	}
	var recs []store.Record
	if err == nil {
		recs, _, err = ps.st.ListVMs(ctx)
	}
	if err == nil {
		if vms := volumeUsers(recs, p.Name, vol, v.Path); len(vms) > 0 {
			err = errf(ErrBusy, "volume %s of storage pool %s is a disk of VMs %s: delete them or their disk first", vol, p.Name, strings.Join(vms, ", "))
		}
	}
	if err == nil {
		if rerr := os.Remove(v.Path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("agent: delete volume %s: %w", vol, rerr)
		}
	}
	if err != nil {
		return err
	}
	ps.log.Info("volume deleted", "pool", p.Name, "volume", vol)
	return nil
}

// checkVolumeCreate validates a create request and returns the size of an
// empty volume (0 when copying) and the source image path, if any.
func checkVolumeCreate(p api.Pool, c *api.VolumeCreate) (size int64, src string, err error) {
	if !volRE.MatchString(c.Name) {
		return 0, "", fieldErr("name", fmt.Sprintf("%q: use up to 128 letters, digits, '.', '_' and '-', not starting with '.', '_' or '-'", c.Name))
	}
	if c.Format == "" {
		c.Format = defaultVolumeFormat
	}
	d, err := diskimage.Lookup(c.Format)
	if err != nil || d.Create == nil {
		return 0, "", fieldErr("format", fmt.Sprintf("%q: use one of %s", c.Format, strings.Join(diskimage.Formats(), ", ")))
	}
	given := 0
	for _, s := range []string{c.Size, c.From, c.FromVolume} {
		if s != "" {
			given++
		}
	}
	if given != 1 {
		return 0, "", fieldErr("size", "give exactly one of size (an empty volume), from (an image file) or fromVolume (a volume of this pool)")
	}
	switch {
	case c.Size != "":
		size, err = diskimage.ParseSize(c.Size)
		if err != nil || size <= 0 || size > maxVolumeSize {
			return 0, "", fieldErr("size", fmt.Sprintf("%q: want a size from 1 byte to 64T, such as 10G", c.Size))
		}
	case c.From != "":
		if err := checkFile(c.From, true); err != nil {
			return 0, "", fieldErr("from", err.Error())
		}
		src = c.From
	default:
		if !volRE.MatchString(c.FromVolume) {
			return 0, "", fieldErr("fromVolume", fmt.Sprintf("%q is not a volume name", c.FromVolume))
		}
		src = filepath.Join(p.Path, c.FromVolume)
		if fi, err := os.Stat(src); err != nil || !fi.Mode().IsRegular() {
			return 0, "", fieldErr("fromVolume", fmt.Sprintf("no volume %q in storage pool %s", c.FromVolume, p.Name))
		}
	}
	return size, src, nil
}

// CreateVolume makes a volume in a pool on this host: empty, or a copy of
// an image file or of another volume.
func (ps *poolService) CreateVolume(ctx context.Context, pool string, c api.VolumeCreate) (api.Volume, error) {
	p, err := ps.localPool(ctx, pool)
	var size int64
	var src string
	if err == nil {
		size, src, err = checkVolumeCreate(p, &c)
	}
	dst := filepath.Join(p.Path, c.Name)
	if err == nil && src != "" {
		err = ps.checkQuiet(ctx, src)
	}
	if err == nil {
		if _, serr := os.Lstat(dst); serr == nil {
			err = errf(store.ErrExists, "volume %s already exists in storage pool %s", c.Name, p.Name)
		}
	}
	if err == nil {
		err = ps.makeListed(ctx, p, c, dst, size, src)
	}
	var v api.Volume
	if err == nil {
		v, err = describeVolume(p, c.Name)
	}
	if err != nil {
		return api.Volume{}, err
	}
	ps.log.Info("volume created", "pool", p.Name, "volume", c.Name, "format", v.Format, "size", v.VirtualSize, "from", src)
	return v, nil
}

// makeListed makes the volume as makeVolume does; one converted from an
// image or volume is listed with its progress meanwhile.
func (ps *poolService) makeListed(ctx context.Context, p api.Pool, c api.VolumeCreate, dst string, size int64, src string) error {
	if src == "" {
		return makeVolume(ctx, dst, c.Format, size, src, nil)
	}
	var total int64
	if info, err := diskimage.InfoOf(src, ""); err == nil {
		total = info.VirtualSize
	}
	m, done, err := ps.startMaking(api.Volume{Name: c.Name, Pool: p.Name, Path: dst, Format: c.Format, VirtualSize: total}, total)
	if err != nil {
		return err
	}
	defer done()
	return makeVolume(ctx, dst, c.Format, size, src, m.progress)
}

// checkQuiet refuses to copy an image that a VM desired running writes to:
// the copy would be torn.
func (ps *poolService) checkQuiet(ctx context.Context, src string) error {
	recs, _, err := ps.st.ListVMs(ctx)
	if err != nil {
		return err
	}
	src = filepath.Clean(src)
	vms := vmsUsing(recs, func(s api.VMSpec) bool {
		return slices.ContainsFunc(s.Disks, func(d api.DiskSpec) bool { return !d.ReadOnly && filepath.Clean(d.Path) == src })
	})
	var running []string
	for _, r := range recs {
		if r.Desired.Power == api.PowerRunning && slices.Contains(vms, r.Desired.Spec.Name) {
			running = append(running, r.Desired.Spec.Name)
		}
	}
	if len(running) > 0 {
		return errf(ErrBusy, "%s is a writable disk of running VMs %s: stop them before copying it", src, strings.Join(running, ", "))
	}
	return nil
}

// makeVolume creates the image dst: empty of size bytes, or converted from
// the image src. It is built under a temporary name and renamed into place
// without replacing anything, so a failure or a concurrent create never
// leaves a half-written volume behind.
func makeVolume(ctx context.Context, dst, format string, size int64, src string, progress func(done, total int64)) (err error) {
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(dst), ".gv-tmp-"+hex.EncodeToString(rnd[:]))
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	var in diskimage.Image
	if src != "" {
		in, err = diskimage.Open(src, diskimage.OpenOptions{ReadOnly: true})
		if err != nil {
			return fieldErr("from", fmt.Sprintf("cannot read the image: %v", err))
		}
		defer in.Close()
		size = in.VirtualSize()
	}
	out, err := diskimage.Create(tmp, format, size, diskimage.CreateOptions{})
	if err != nil {
		return fmt.Errorf("agent: create %s volume: %w", format, err)
	}
	if in != nil {
		if err = convert.Convert(ctx, in, out, convert.Options{Progress: progress}); err != nil {
			out.Close()
			return fmt.Errorf("agent: convert %s to %s: %w", src, format, err)
		}
	}
	if err = out.Close(); err != nil {
		return fmt.Errorf("agent: write volume: %w", err)
	}
	os.Chmod(tmp, 0o600)
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		// NFS (a shared pool) has no RENAME_NOREPLACE; a hard link is as
		// atomic and refuses an existing name too.
		if err = os.Link(tmp, dst); err == nil {
			os.Remove(tmp)
		}
	}
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return errf(store.ErrExists, "volume %s already exists", filepath.Base(dst))
		}
		return fmt.Errorf("agent: put volume %s in place: %w", filepath.Base(dst), err)
	}
	return nil
}

// resolveDisks fills in the path of each disk given as pool + volume. The
// VM runs on host, so the pool must be one it sees.
func resolveDisks(ctx context.Context, st *store.Store, host string, s *api.VMSpec) error {
	for i := range s.Disks {
		d := &s.Disks[i]
		field := fmt.Sprintf("disks[%d]", i)
		if d.Pool == "" && d.Volume == "" {
			continue
		}
		if d.Pool == "" {
			return fieldErr(field+".pool", "required with volume: the storage pool that holds it")
		}
		if d.Volume == "" {
			return fieldErr(field+".volume", "required with pool: a volume of the pool (govisor volume list "+d.Pool+")")
		}
		p, err := st.GetPool(ctx, d.Pool)
		if errors.Is(err, store.ErrNotFound) {
			return fieldErr(field+".pool", fmt.Sprintf("no storage pool %q (define it with govisor pool create)", d.Pool))
		}
		if err != nil {
			return err
		}
		if !poolOn(p, host) {
			return fieldErr(field+".pool", fmt.Sprintf("storage pool %s is on host %s, not on %s where this VM runs", p.Name, p.Host, host))
		}
		path := filepath.Join(p.Path, d.Volume)
		if !volRE.MatchString(d.Volume) {
			return fieldErr(field+".volume", fmt.Sprintf("%q is not a volume name", d.Volume))
		}
		if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
			return fieldErr(field+".volume", fmt.Sprintf("no volume %q in storage pool %s (govisor volume create)", d.Volume, p.Name))
		}
		if d.Path != "" && filepath.Clean(d.Path) != path {
			return fieldErr(field+".path", fmt.Sprintf("%s is not volume %s of pool %s (%s): give path or pool and volume", d.Path, d.Volume, p.Name, path))
		}
		d.Path = path
	}
	return nil
}
