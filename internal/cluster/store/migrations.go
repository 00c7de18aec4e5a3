package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/govisor/govisor/api"
)

// A live migration is desired state, as a VM's definition is: whoever
// wants one (the API, the HA or balance controllers) writes a Migration
// record next to the VM's keys,
//
//	/govisor/vms/<name>/migration
//
// and the agent of the source host carries it out, moving the record
// through its phases with revision-guarded updates. A crash of either
// agent leaves the record behind, and the next agent on the source host
// resumes or aborts the migration from it. Deleting the VM deletes the
// record with the VM's other keys.

// MigrationPhase is where a migration stands.
type MigrationPhase string

// Migration phases, in order; Done, Failed and Cancelled are final.
const (
	// MigrationRequested: written, not yet picked up by the source's agent.
	MigrationRequested MigrationPhase = "requested"
	// MigrationPreparing: the destination's agent starts the VMM that
	// receives the VM.
	MigrationPreparing MigrationPhase = "preparing"
	// MigrationRunning: the source's VMM sends the VM.
	MigrationRunning MigrationPhase = "running"
	// MigrationSwitchingOver: the guest runs on the destination; the VM's
	// host in etcd is about to name it.
	MigrationSwitchingOver MigrationPhase = "switching-over"
	// MigrationDone: the VM's host is the destination.
	MigrationDone MigrationPhase = "done"
	// MigrationFailed: the VM stays on the source; Error says why.
	MigrationFailed MigrationPhase = "failed"
	// MigrationCancelled: cancelled on request; the VM stays on the source.
	MigrationCancelled MigrationPhase = "cancelled"
)

// Final reports whether nothing happens to a migration in phase p any more.
func (p MigrationPhase) Final() bool {
	return p == MigrationDone || p == MigrationFailed || p == MigrationCancelled
}

// Errors of CreateMigration, matched with errors.Is.
var (
	// ErrMigrating is a second migration of a VM whose first has not ended.
	ErrMigrating = errors.New("store: the VM is being migrated")
	// ErrNotOnSource is a migration of a VM that does not run on the
	// migration's source host.
	ErrNotOnSource = errors.New("store: the VM does not run on the migration's source host")
)

// MigrationOptions are how a migration is to be made.
type MigrationOptions struct {
	MaxDowntimeMS int   `json:"maxDowntimeMS,omitempty"` // downtime target; 0: the VMM's default
	Bandwidth     int64 `json:"bandwidth,omitempty"`     // bytes per second; 0: unlimited
	AutoConverge  bool  `json:"autoConverge,omitempty"`  // throttle a guest that dirties memory too fast
	PostCopy      bool  `json:"postCopy,omitempty"`      // switch to post-copy when pre-copy cannot converge
	// MirrorDisks copies the disks to the destination: nil decides by
	// whether the destination reaches them (a shared pool), true always,
	// false never.
	MirrorDisks *bool `json:"mirrorDisks,omitempty"`
}

// MigrationResult is what a completed migration took.
type MigrationResult struct {
	Rounds     int     `json:"rounds"`
	BytesSent  int64   `json:"bytesSent"`
	DowntimeMS float64 `json:"downtimeMS"`
	TotalMS    float64 `json:"totalMS"`
}

// Migration is one live migration of a VM: its request and its progress.
type Migration struct {
	VM          string           `json:"vm"`
	Source      string           `json:"source"`
	Destination string           `json:"destination"`
	Options     MigrationOptions `json:"options"`
	Phase       MigrationPhase   `json:"phase"`
	Error       string           `json:"error,omitempty"`
	// CreatedBy names who asked for it ("api", a controller's name).
	CreatedBy string `json:"createdBy,omitempty"`
	// Caller is the user an API request asked for it as ("ROLE NAME", as
	// agents name a user to each other): the agents' calls to each other
	// for the migration act as that user. Empty: the cluster's own work.
	Caller  string    `json:"caller,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// CancelRequested asks the source's agent to give up while it still can.
	CancelRequested bool `json:"cancelRequested,omitempty"`
	// Addr is where the destination VMM waits, and Disks its copies of
	// mirrored disks: set when preparing ends, so that an agent resuming
	// the migration can finish it.
	Addr  string   `json:"addr,omitempty"`
	Disks []string `json:"disks,omitempty"`
	// Result is set when the migration is done.
	Result *MigrationResult `json:"result,omitempty"`
	// Rev is the etcd revision the record was read or written at; updates
	// succeed only over it.
	Rev int64 `json:"-"`
}

func migrationKey(name string) string { return vmPrefix + name + "/migration" }

// CreateMigration records a new migration of m.VM from m.Source to
// m.Destination, in phase requested. It is refused, atomically with the
// write, when the VM is not defined running on m.Source and reported
// running there (ErrNotOnSource) or when an earlier migration of the VM has
// not ended (ErrMigrating).
func (s *Store) CreateMigration(ctx context.Context, m Migration) (Migration, error) {
	if m.VM == "" || m.Source == "" || m.Destination == "" || m.Source == m.Destination {
		return Migration{}, fmt.Errorf("store: a migration needs a VM and two different hosts (got %q from %q to %q)", m.VM, m.Source, m.Destination)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	now := time.Now().UTC()
	m.Phase, m.Error, m.Created, m.Updated, m.CancelRequested, m.Addr, m.Disks, m.Result = MigrationRequested, "", now, now, false, "", nil, nil
	b, err := json.Marshal(m)
	if err != nil {
		return Migration{}, fmt.Errorf("store: encode migration of %s: %w", m.VM, err)
	}
	k := migrationKey(m.VM)
	for range 5 {
		r, err := s.GetVM(ctx, m.VM)
		if err != nil {
			return Migration{}, err
		}
		if r.Desired.Host != m.Source || r.Desired.Power != api.PowerRunning || r.Status == nil ||
			r.Status.Host != m.Source || r.Status.State != api.StateRunning {
			state := "no status"
			if r.Status != nil {
				state = string(r.Status.State) + " on " + r.Status.Host
			}
			return Migration{}, objErrorf(ErrNotOnSource, "VM %s does not run on host %s (its host is %s, %s)", m.VM, m.Source, r.Desired.Host, state)
		}
		old, err := s.GetMigration(ctx, m.VM)
		switch {
		case errors.Is(err, ErrNotFound):
			old.Rev = 0
		case err != nil:
			return Migration{}, err
		case !old.Phase.Final():
			return Migration{}, objErrorf(ErrMigrating, "VM %s is being migrated from %s to %s (%s)", m.VM, old.Source, old.Destination, old.Phase)
		}
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(specKey(m.VM)), "=", r.SpecRev),
				clientv3.Compare(clientv3.ModRevision(statusKey(m.VM)), "=", r.StatusRev),
				clientv3.Compare(clientv3.ModRevision(k), "=", old.Rev)).
			Then(clientv3.OpPut(k, string(b))).
			Commit()
		if err != nil {
			return Migration{}, s.fail("create migration of "+m.VM, err)
		}
		if resp.Succeeded {
			m.Rev = resp.Header.Revision
			return m, nil
		}
	}
	return Migration{}, objErrorf(ErrConflict, "migration of %s: the VM changed while recording it, try again", m.VM)
}

// GetMigration reads the migration record of VM name (the latest one,
// ended or not); ErrNotFound when there is none.
func (s *Store) GetMigration(ctx context.Context, name string) (Migration, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, migrationKey(name))
	if err != nil {
		return Migration{}, s.fail("read migration of "+name, err)
	}
	if len(resp.Kvs) == 0 {
		return Migration{}, objErrorf(ErrNotFound, "no migration of VM %s", name)
	}
	return decodeMigration(resp.Kvs[0])
}

// ListMigrations reads every migration record, by VM name, and the etcd
// revision of the read (to watch from).
func (s *Store) ListMigrations(ctx context.Context) ([]Migration, int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, vmPrefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, s.fail("list migrations", err)
	}
	var out []Migration
	for _, kv := range resp.Kvs {
		if _, kind, ok := splitKey(string(kv.Key)); !ok || kind != "migration" {
			continue
		}
		m, err := decodeMigration(kv)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, m)
	}
	return out, resp.Header.Revision, nil
}

// UpdateMigration stores m if its record is still at m.Rev (the revision
// it was read or written at), and returns it with its new revision;
// ErrConflict when the record changed meanwhile, ErrNotFound when it is
// gone (the VM was deleted). A final phase is never left.
func (s *Store) UpdateMigration(ctx context.Context, m Migration) (Migration, error) {
	return s.writeMigration(ctx, m, nil)
}

// FinishMigration ends migration m as done: in one transaction the
// record becomes done and the VM's host becomes m.Destination, with fn's
// other changes to its desired state (the mirrored disks' paths). It fails
// with ErrConflict when the record is no longer at m.Rev, and with
// ErrNotOnSource when the VM's host is no longer m.Source.
func (s *Store) FinishMigration(ctx context.Context, m Migration, fn func(d *Desired)) (Migration, error) {
	m.Phase, m.Error = MigrationDone, ""
	return s.writeMigration(ctx, m, func(d *Desired) error {
		if d.Host != m.Source {
			return objErrorf(ErrNotOnSource, "VM %s moved to host %s meanwhile", m.VM, d.Host)
		}
		d.Host = m.Destination
		if fn != nil {
			fn(d)
		}
		return nil
	})
}

// writeMigration puts m over revision m.Rev, and with flip the VM's
// desired state changed by flip, atomically.
func (s *Store) writeMigration(ctx context.Context, m Migration, flip func(d *Desired) error) (Migration, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	m.Updated = time.Now().UTC()
	b, err := json.Marshal(m)
	if err != nil {
		return Migration{}, fmt.Errorf("store: encode migration of %s: %w", m.VM, err)
	}
	k := migrationKey(m.VM)
	for range 5 {
		old, err := s.GetMigration(ctx, m.VM)
		if err != nil {
			return Migration{}, err
		}
		if old.Rev != m.Rev {
			return Migration{}, objErrorf(ErrConflict, "migration of %s changed meanwhile (now %s)", m.VM, old.Phase)
		}
		if old.Phase.Final() && old.Phase != m.Phase {
			return Migration{}, objErrorf(ErrConflict, "migration of %s already ended (%s)", m.VM, old.Phase)
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(k), "=", m.Rev)}
		ops := []clientv3.Op{clientv3.OpPut(k, string(b))}
		if flip != nil {
			r, err := s.GetVM(ctx, m.VM)
			if err != nil {
				return Migration{}, err
			}
			d := r.Desired
			if err := flip(&d); err != nil {
				return Migration{}, err
			}
			db, err := json.Marshal(d)
			if err != nil {
				return Migration{}, fmt.Errorf("store: encode %s: %w", m.VM, err)
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(specKey(m.VM)), "=", r.SpecRev))
			ops = append(ops, clientv3.OpPut(specKey(m.VM), string(db)))
		}
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return Migration{}, s.fail("update migration of "+m.VM, err)
		}
		if resp.Succeeded {
			m.Rev = resp.Header.Revision
			return m, nil
		}
	}
	return Migration{}, objErrorf(ErrConflict, "migration of %s: the VM kept changing, try again", m.VM)
}

// WatchMigrations streams the migration records of host (as source or
// destination; "" for every host) written after revision fromRev (0: from
// now) until ctx ends. Deletions are not reported. The channel closes when
// the watch ends: callers list again and watch from there.
func (s *Store) WatchMigrations(ctx context.Context, host string, fromRev int64) <-chan Migration {
	out := make(chan Migration, 16)
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if fromRev > 0 {
		opts = append(opts, clientv3.WithRev(fromRev+1))
	}
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), vmPrefix, opts...)
	go func() {
		defer close(out)
		for resp := range wch {
			if resp.Err() != nil {
				return
			}
			for _, ev := range resp.Events {
				if _, kind, ok := splitKey(string(ev.Kv.Key)); !ok || kind != "migration" || ev.Type == clientv3.EventTypeDelete {
					continue
				}
				m, err := decodeMigration(ev.Kv)
				if err != nil || (host != "" && m.Source != host && m.Destination != host) {
					continue
				}
				select {
				case out <- m:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func decodeMigration(kv *mvccKV) (Migration, error) {
	var m Migration
	if err := json.Unmarshal(kv.Value, &m); err != nil {
		return Migration{}, fmt.Errorf("store: decode %s: %w", kv.Key, err)
	}
	m.Rev = kv.ModRevision
	return m, nil
}
