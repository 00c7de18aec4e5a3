package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
)

// snapshotIndex is the file in a VM's directory that lists its snapshots
// (those saved elsewhere with a path too).
const snapshotIndex = "snapshots.json"

// maxSnapshots bounds a VM's snapshot index.
const maxSnapshots = 1000

// snapshotTimeout bounds saving one snapshot (its memory is written out).
const snapshotTimeout = 10 * time.Minute

// readSnapshots reads the snapshot index of VM name (empty if none).
func (a *Agent) readSnapshots(name string) ([]api.Snapshot, error) {
	b, err := os.ReadFile(filepath.Join(a.vmDir(name), snapshotIndex))
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
func (a *Agent) writeSnapshots(name string, l []api.Snapshot) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("agent: encode snapshot index: %w", err)
	}
	p := filepath.Join(a.vmDir(name), snapshotIndex)
	f, err := os.CreateTemp(a.vmDir(name), "."+snapshotIndex+".tmp-")
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

// handleSnapshot serves POST /v1/vms/{name}/snapshot: the VMM saves the
// running (or paused) VM; the guest carries on afterwards as it was.
func (a *Agent) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.localVM(w, r)
	if !ok {
		return
	}
	name := rec.Desired.Spec.Name
	var req api.SnapshotRequest
	if err := decodeObject(r, &req, "a snapshot request"); err != nil {
		httpError(w, err)
		return
	}
	if !nameRE.MatchString(req.Name) {
		httpError(w, &FieldError{"name", fmt.Sprintf("%q: use 1-63 lower-case letters, digits and '-' (a DNS label)", req.Name)})
		return
	}
	dir, err := filepath.Abs(filepath.Join(a.vmDir(name), "snapshots", req.Name))
	if err != nil {
		httpError(w, fmt.Errorf("agent: snapshot folder: %w", err))
		return
	}
	if req.Path != "" {
		if !filepath.IsAbs(req.Path) {
			httpError(w, &FieldError{"path", fmt.Sprintf("%q: give an absolute folder on the host", req.Path)})
			return
		}
		if _, err := os.Lstat(req.Path); err == nil {
			httpError(w, &FieldError{"path", fmt.Sprintf("%s already exists: give a folder to create", req.Path)})
			return
		}
		if fi, err := os.Stat(filepath.Dir(req.Path)); err != nil || !fi.IsDir() {
			httpError(w, &FieldError{"path", fmt.Sprintf("%s: its parent folder does not exist", req.Path)})
			return
		}
		dir = filepath.Clean(req.Path)
	}
	p, err := a.liveProc(rec, "snapshot", api.StateRunning, api.StatePaused)
	if err != nil {
		httpError(w, err)
		return
	}
	a.snapMu.Lock()
	defer a.snapMu.Unlock()
	list, err := a.readSnapshots(name)
	if err != nil {
		httpError(w, err)
		return
	}
	for _, s := range list {
		if s.Name == req.Name {
			httpError(w, fmt.Errorf("%w: VM %s already has a snapshot %q (at %s)", store.ErrExists, name, s.Name, s.Path))
			return
		}
	}
	if len(list) >= maxSnapshots {
		httpError(w, fmt.Errorf("%w: VM %s has %d snapshots, the most it may keep", ErrBusy, name, len(list)))
		return
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		httpError(w, fmt.Errorf("agent: snapshot folder: %w", err))
		return
	}
	os.RemoveAll(dir) // a leftover under the VM's folder from a failed index write
	ctx, cancel := context.WithTimeout(r.Context(), snapshotTimeout)
	defer cancel()
	if _, err := p.vmm.Snapshot(ctx, dir); err != nil {
		os.RemoveAll(dir) // nothing half-written stays behind
		httpError(w, fmt.Errorf("%w: snapshot of %s: %v", ErrVMM, name, err))
		return
	}
	s := api.Snapshot{Name: req.Name, Path: dir, Created: time.Now().UTC(), SizeBytes: dirSize(dir)}
	if err := a.writeSnapshots(name, append(list, s)); err != nil {
		os.RemoveAll(dir)
		httpError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, s)
}

// handleSnapshots serves GET /v1/vms/{name}/snapshots, oldest first;
// snapshots whose folder was removed by hand are left out.
func (a *Agent) handleSnapshots(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.localVM(w, r)
	if !ok {
		return
	}
	a.snapMu.Lock()
	list, err := a.readSnapshots(rec.Desired.Spec.Name)
	a.snapMu.Unlock()
	if err != nil {
		httpError(w, err)
		return
	}
	out := api.SnapshotList{Items: []api.Snapshot{}}
	for _, s := range list {
		if fi, err := os.Stat(s.Path); err == nil && fi.IsDir() {
			out.Items = append(out.Items, s)
		}
	}
	sort.SliceStable(out.Items, func(i, j int) bool { return out.Items[i].Created.Before(out.Items[j].Created) })
	writeJSON(w, http.StatusOK, out)
}

// handleRestore serves POST /v1/vms/{name}/restore: a running VMM is
// stopped at once and a new one resumes the snapshot (`govisor run
// --restore`); a stopped VM is started from it.
func (a *Agent) handleRestore(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.localVM(w, r)
	if !ok {
		return
	}
	name := rec.Desired.Spec.Name
	wait, err := parseWait(r)
	if err != nil {
		httpError(w, err)
		return
	}
	var req api.RestoreRequest
	if err := decodeObject(r, &req, "a restore request"); err != nil {
		httpError(w, err)
		return
	}
	a.snapMu.Lock()
	list, err := a.readSnapshots(name)
	a.snapMu.Unlock()
	if err != nil {
		httpError(w, err)
		return
	}
	dir := ""
	for _, s := range list {
		if s.Name == req.Snapshot {
			dir = s.Path
		}
	}
	if fi, err := os.Stat(dir); dir == "" || err != nil || !fi.IsDir() {
		httpError(w, &FieldError{"snapshot", fmt.Sprintf("%q: VM %s has no such snapshot (see GET /v1/vms/%s/snapshots)", req.Snapshot, name, name)})
		return
	}
	a.mu.Lock()
	p := a.procs[name]
	a.mu.Unlock()
	if p != nil {
		if p.state().migration != nil {
			httpError(w, fmt.Errorf("%w: cannot restore VM %s: it is being migrated", ErrBusy, name))
			return
		}
	}
	t0 := time.Now().UTC()
	a.mu.Lock()
	a.restoreNext[name] = dir
	delete(a.notBefore, name)
	delete(a.backoff, name)
	a.mu.Unlock()
	if _, err := a.st.UpdateVM(r.Context(), name, func(d *store.Desired) error { d.Power = api.PowerRunning; return nil }); err != nil {
		a.mu.Lock()
		delete(a.restoreNext, name)
		a.mu.Unlock()
		httpError(w, err)
		return
	}
	if p != nil {
		// The guest's state is replaced: no shutdown, the VMM goes at once.
		p.requestRestart()
		p.kill()
	}
	a.poke()
	a.answerWait(w, r, name, "restart", t0, wait)
}

// parseWait reads ?wait= (how long an action may wait for its effect).
func parseWait(r *http.Request) (time.Duration, error) {
	q := r.URL.Query().Get("wait")
	if q == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(q)
	if err != nil || d < 0 || d > maxWait {
		return 0, &FieldError{"wait", fmt.Sprintf("%q: give a duration up to %v, such as 30s", q, maxWait)}
	}
	return d, nil
}

// answerWait answers an action with the VM: 200 once it got there within
// wait, else 202.
func (a *Agent) answerWait(w http.ResponseWriter, r *http.Request, name, action string, t0 time.Time, wait time.Duration) {
	rec, reached, err := a.waitFor(r.Context(), name, action, t0, wait)
	if err != nil {
		httpError(w, err)
		return
	}
	code := http.StatusAccepted
	if reached {
		code = http.StatusOK
	}
	writeJSON(w, code, toAPI(rec))
}
