package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/jail"
	"github.com/govisor/govisor/internal/node"
)

// snapshotIndex is the file in a VM's directory that lists its snapshots
// (those saved elsewhere with a path too).
const snapshotIndex = "snapshots.json"

// maxSnapshots bounds a VM's snapshot index.
const maxSnapshots = 1000

// snapshotTimeout bounds saving one snapshot (its memory is written out).
const snapshotTimeout = 10 * time.Minute

// snapshotService implements service.Snapshots: snapshots of this host's
// VMs, listed in each VM's folder, and restores from them.
type snapshotService struct {
	vmAccess
	mu sync.Mutex // serializes snapshot index updates
}

var _ service.Snapshots = (*snapshotService)(nil)

// readSnapshots reads the snapshot index of VM name (empty if none).
func (ss *snapshotService) readSnapshots(name string) ([]api.Snapshot, error) {
	b, err := os.ReadFile(filepath.Join(ss.vmDir(name), snapshotIndex))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: snapshots of %s: %w", name, err)
	}
	var l []api.Snapshot
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("agent: snapshot index of %s is corrupt: %w", name, err)
	}
	return l, nil
}

// writeSnapshots replaces the index atomically (write, fsync, rename).
func (ss *snapshotService) writeSnapshots(name string, l []api.Snapshot) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("agent: encode snapshot index: %w", err)
	}
	p := filepath.Join(ss.vmDir(name), snapshotIndex)
	f, err := os.CreateTemp(ss.vmDir(name), "."+snapshotIndex+".tmp-")
	if err != nil {
		return fmt.Errorf("agent: snapshot index of %s: %w", name, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("agent: snapshot index of %s: %w", name, err)
	}
	return nil
}

// dirSize is the bytes the files under dir take on disk (holes excluded
// when the file system reports blocks).
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// Snapshot saves the running (or paused) VM name; the guest carries on
// afterwards as it was.
func (ss *snapshotService) Snapshot(ctx context.Context, name string, req api.SnapshotRequest) (api.Snapshot, error) {
	rec, err := ss.localVM(ctx, name)
	if err != nil {
		return api.Snapshot{}, err
	}
	if !nameRE.MatchString(req.Name) {
		return api.Snapshot{}, fieldErr("name", fmt.Sprintf("%q: use 1-63 lower-case letters, digits and '-' (a DNS label)", req.Name))
	}
	dir, err := filepath.Abs(filepath.Join(ss.vmDir(name), "snapshots", req.Name))
	if err != nil {
		return api.Snapshot{}, fmt.Errorf("agent: snapshot folder: %w", err)
	}
	if req.Path != "" {
		if !filepath.IsAbs(req.Path) {
			return api.Snapshot{}, fieldErr("path", fmt.Sprintf("%q: give an absolute folder on the host", req.Path))
		}
		if _, err := os.Lstat(req.Path); err == nil {
			return api.Snapshot{}, fieldErr("path", fmt.Sprintf("%s already exists: give a folder to create", req.Path))
		}
		if fi, err := os.Stat(filepath.Dir(req.Path)); err != nil || !fi.IsDir() {
			return api.Snapshot{}, fieldErr("path", fmt.Sprintf("%s: its parent folder does not exist", req.Path))
		}
		dir = filepath.Clean(req.Path)
	}
	p, err := ss.liveProc(rec, "snapshot", api.StateRunning, api.StatePaused)
	if err != nil {
		return api.Snapshot{}, err
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	list, err := ss.readSnapshots(name)
	if err != nil {
		return api.Snapshot{}, err
	}
	for _, s := range list {
		if s.Name == req.Name {
			return api.Snapshot{}, fmt.Errorf("%w: VM %s already has a snapshot %q (at %s)", store.ErrExists, name, s.Name, s.Path)
		}
	}
	if len(list) >= maxSnapshots {
		return api.Snapshot{}, fmt.Errorf("%w: VM %s has %d snapshots, the most it may keep", ErrBusy, name, len(list))
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return api.Snapshot{}, fmt.Errorf("agent: snapshot folder: %w", err)
	}
	os.RemoveAll(dir) // a leftover under the VM's folder from a failed index write
	sctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	if err := ss.vmmSnapshot(sctx, p, name, dir); err != nil {
		os.RemoveAll(dir) // nothing half-written stays behind
		return api.Snapshot{}, fmt.Errorf("%w: snapshot of %s: %v", ErrVMM, name, err)
	}
	s := api.Snapshot{Name: req.Name, Path: dir, Created: time.Now().UTC(), SizeBytes: dirSize(dir)}
	if err := ss.writeSnapshots(name, append(list, s)); err != nil {
		os.RemoveAll(dir)
		return api.Snapshot{}, err
	}
	return s, nil
}

// ListSnapshots lists VM name's snapshots, oldest first; snapshots whose
// folder was removed by hand are left out.
func (ss *snapshotService) ListSnapshots(ctx context.Context, name string) (api.SnapshotList, error) {
	rec, err := ss.localVM(ctx, name)
	if err != nil {
		return api.SnapshotList{}, err
	}
	ss.mu.Lock()
	list, err := ss.readSnapshots(rec.Desired.Spec.Name)
	ss.mu.Unlock()
	if err != nil {
		return api.SnapshotList{}, err
	}
	out := api.SnapshotList{Items: []api.Snapshot{}}
	for _, s := range list {
		if fi, err := os.Stat(s.Path); err == nil && fi.IsDir() {
			out.Items = append(out.Items, s)
		}
	}
	sort.SliceStable(out.Items, func(i, j int) bool { return out.Items[i].Created.Before(out.Items[j].Created) })
	return out, nil
}

// Restore resumes VM name from a snapshot: a running VMM is stopped at
// once and a new one resumes the snapshot (`govisor run --restore`); a
// stopped VM is started from it. wait is as an action's.
func (ss *snapshotService) Restore(ctx context.Context, name, waitArg string, req api.RestoreRequest) (api.VM, bool, error) {
	if _, err := ss.localVM(ctx, name); err != nil {
		return api.VM{}, false, err
	}
	wait, err := parseWait(waitArg)
	if err != nil {
		return api.VM{}, false, err
	}
	ss.mu.Lock()
	list, err := ss.readSnapshots(name)
	ss.mu.Unlock()
	if err != nil {
		return api.VM{}, false, err
	}
	dir := ""
	for _, s := range list {
		if s.Name == req.Snapshot {
			dir = s.Path
		}
	}
	if fi, err := os.Stat(dir); dir == "" || err != nil || !fi.IsDir() {
		return api.VM{}, false, fieldErr("snapshot", fmt.Sprintf("%q: VM %s has no such snapshot (see GET /v1/vms/%s/snapshots)", req.Snapshot, name, name))
	}
	p := ss.node.Proc(name)
	if p != nil {
		if p.State().Migration != nil {
			return api.VM{}, false, fmt.Errorf("%w: cannot restore VM %s: it is being migrated", ErrBusy, name)
		}
	}
	t0 := time.Now().UTC()
	ss.node.RestoreNext(name, dir)
	if _, err := ss.st.UpdateVM(ctx, name, func(d *store.Desired) error { d.Power = api.PowerRunning; return nil }); err != nil {
		ss.node.CancelRestore(name)
		return api.VM{}, false, err
	}
	if p != nil {
		// The guest's state is replaced: no shutdown, the VMM goes at once.
		p.RequestRestart()
		p.Kill()
	}
	ss.poke()
	r, reached, err := ss.waitFor(ctx, name, "restart", t0, wait)
	if err != nil {
		return api.VM{}, false, err
	}
	return toAPI(r), reached, nil
}

// parseWait reads a wait argument (how long an action may wait for its
// effect): a Go duration up to maxWait; empty is none.
func parseWait(q string) (time.Duration, error) {
	if q == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(q)
	if err != nil || d < 0 || d > maxWait {
		return 0, fieldErr("wait", fmt.Sprintf("%q: give a duration up to %v, such as 30s", q, maxWait))
	}
	return d, nil
}

// vmmSnapshot has VMM p of VM name write a snapshot to dir. A jailed VMM
// writes only in its VM's folder: it gets the snapshots folder there, and
// a snapshot asked for elsewhere is written there and then moved (a
// rename: on another file system the request fails, naming the fix).
func (ss *snapshotService) vmmSnapshot(ctx context.Context, p *node.Proc, name, dir string) error {
	if p.Jail == "" {
		_, err := p.VMM.Snapshot(ctx, dir)
		return err
	}
	uid, gid := jail.IDs(p.Jail)
	inside := filepath.Join(ss.vmDir(name), "snapshots")
	if err := os.MkdirAll(inside, 0o700); err != nil {
		return err
	}
	if err := os.Chown(inside, uid, gid); err != nil {
		return err
	}
	if filepath.Dir(dir) == inside {
		_, err := p.VMM.Snapshot(ctx, dir)
		return err
	}
	tmp := filepath.Join(inside, ".moving-"+filepath.Base(dir))
	os.RemoveAll(tmp)
	if _, err := p.VMM.Snapshot(ctx, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("move the jailed VMM's snapshot to %s: %w (give a folder on the file system of %s, or run the agent with --no-jail)", dir, err, inside)
	}
	return nil
}
