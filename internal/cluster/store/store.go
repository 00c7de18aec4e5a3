// Package store keeps govisor's desired and observed VM state in etcd: an
// embedded single-member etcd in the agent's state directory by default, an
// embedded member of a multi-member cluster (Config.Member), or an external
// cluster. Desired state (a VM's definition and power state) and
// observed state (what its host agent last saw) live under separate keys so
// that users write one and agents the other:
//
//	/govisor/vms/<name>/spec    Desired (written through the API)
//	/govisor/vms/<name>/status  api.VMStatus (written by the VM's host agent)
//	/govisor/vms/<name>/migration  Migration (see migrations.go)
//	/govisor/hosts/<host>       api.Host (kept alive by a lease)
//	/govisor/networks/<name>    api.Network (see networks.go)
//	/govisor/pools/<name>       api.Pool
//
// Every etcd key and request of govisor is this package's: the rest of the
// tree uses its typed methods and never imports the etcd client (a test in
// internal/archtest holds that rule).
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/govisor/govisor/api"
)

// Errors callers match with errors.Is.
var (
	ErrNotFound = errors.New("store: VM not found")
	ErrExists   = errors.New("store: VM name already taken")
	ErrConflict = errors.New("store: concurrent update, try again")
)

const (
	vmPrefix   = "/govisor/vms/"
	hostPrefix = "/govisor/hosts/"
)

// Config says which etcd to use.
type Config struct {
	// DataDir is where an embedded etcd keeps its data (DataDir/etcd).
	DataDir string
	// Endpoints of an external etcd cluster; empty means embedded. With
	// Member, every member's client URL, one each.
	Endpoints []string
	// Member, if set, makes the embedded etcd (data in DataDir/etcd) one
	// member of a multi-member cluster.
	Member *Member
	// Timeout bounds start-up and each dial (default 20s; with Member 2m,
	// as start-up waits until the cluster has a quorum).
	Timeout time.Duration
	// TLS, if set, makes every etcd connection TLS with client
	// certificates (the embedded member's and the client's); every etcd
	// URL is then https://.
	TLS *TLS
	// RequestTimeout bounds each request whose context has no deadline
	// (default 15s); one that etcd does not answer in time fails with
	// ErrUnavailable.
	RequestTimeout time.Duration
}

// Store is a handle on the govisor keys in etcd.
type Store struct {
	cli        *clientv3.Client
	etc        *embed.Etcd
	member     string // the embedded member's name, in member mode
	tls        *TLS
	endpoints  []string
	reqTimeout time.Duration
	closeOnce  sync.Once
	closeErr   error
}

// Desired is a VM's desired state: its definition, power state and host.
type Desired struct {
	Spec  api.VMSpec `json:"spec"`
	Power api.Power  `json:"power"`
	Host  string     `json:"host"`
	// LeaseSeen is what the HA controller saw of the VM's disk leases
	// before it restarted the VM here, by disk path (disklease.Seen): the
	// new VMM waits only for the rest of a dead holder's expiry.
	LeaseSeen map[string]LeaseSeen `json:"leaseSeen,omitempty"`
}

// LeaseSeen is a disk lease record's checksum and for how long an
// observer saw it unchanged (disklease.Seen).
type LeaseSeen struct {
	Sum   uint32 `json:"sum"`
	ForMS int64  `json:"forMS"`
}

// Record is a VM's desired and observed state with their etcd revisions.
type Record struct {
	Desired   Desired
	Status    *api.VMStatus // nil until an agent reports
	SpecRev   int64
	StatusRev int64
	// Migration is the VM's live-migration record while it has not ended
	// (nil otherwise): what the controllers trust, where a status may
	// still say "migrating" after its last write was lost.
	Migration *Migration
}

// Open connects to etcd, starting the embedded member when cfg has no
// endpoints or a Member.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 20 * time.Second
		if cfg.Member != nil {
			cfg.Timeout = 2 * time.Minute
		}
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = defaultRequestTimeout
	}
	s := &Store{reqTimeout: cfg.RequestTimeout, tls: cfg.TLS}
	endpoints := cfg.Endpoints
	if cfg.TLS != nil {
		if err := cfg.TLS.Check(); err != nil {
			return nil, err
		}
	}
	if err := cfg.TLS.checkSchemes(flagEndpoints, endpoints...); err != nil {
		return nil, err
	}
	if cfg.Member != nil {
		m, err := cfg.Member.Check(endpoints)
		if err != nil {
			return nil, err
		}
		if err := m.checkSchemes(cfg.TLS); err != nil {
			return nil, err
		}
		if cfg.DataDir == "" {
			return nil, errors.New("store: no data directory for the embedded etcd member")
		}
		if s.etc, err = startMember(cfg.DataDir, m, cfg.Timeout, cfg.TLS); err != nil {
			return nil, err
		}
		s.member = m.Name
		if m.Join {
			others := slices.DeleteFunc(slices.Clone(endpoints), func(e string) bool { return e == m.ClientURL })
			if err := promote(ctx, others, uint64(s.etc.Server.MemberID()), cfg.Timeout, cfg.TLS); err != nil {
				s.Close()
				return nil, err
			}
		}
	} else if len(endpoints) == 0 {
		if cfg.DataDir == "" {
			return nil, errors.New("store: no etcd endpoints and no data directory for an embedded etcd")
		}
		e, url, err := startEmbedded(cfg.DataDir, cfg.Timeout, cfg.TLS)
		if err != nil {
			return nil, err
		}
		s.etc, endpoints = e, []string{url}
	}
	cli, err := newClient(ctx, endpoints, cfg.Timeout, cfg.TLS)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("store: connect to etcd %v: %w", endpoints, err)
	}
	s.cli, s.endpoints = cli, endpoints
	// Fail now, naming the endpoints, rather than on the first request.
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if _, err := cli.Get(cctx, "/govisor/", clientv3.WithCountOnly()); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: etcd %v unreachable: %w", endpoints, err)
	}
	return s, nil
}

// MemberMode reports whether the embedded etcd is a member of a
// multi-member cluster (Config.Member), which other hosts can join.
func (s *Store) MemberMode() bool { return s.member != "" }

// Embedded reports whether the store runs its own etcd member.
func (s *Store) Embedded() bool { return s.etc != nil }

// Endpoints are the etcd client URLs in use (the embedded single member's, if any).
func (s *Store) Endpoints() []string { return s.endpoints }

// Close disconnects and stops an embedded etcd; closing again does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.cli != nil {
			s.closeErr = s.cli.Close()
		}
		if s.etc != nil {
			s.etc.Close()
		}
	})
	return s.closeErr
}

func specKey(name string) string   { return vmPrefix + name + "/spec" }
func statusKey(name string) string { return vmPrefix + name + "/status" }

// CreateVM stores a new VM's desired state; ErrExists when the name is taken.
func (s *Store) CreateVM(ctx context.Context, d Desired) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("store: encode %s: %w", d.Spec.Name, err)
	}
	k := specKey(d.Spec.Name)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	// The create revision of a missing key is 0: the put only happens when
	// the name is free, atomically with the check.
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(b)), clientv3.OpDelete(statusKey(d.Spec.Name))).
		Commit()
	if err != nil {
		return s.fail("create "+d.Spec.Name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: %s", ErrExists, d.Spec.Name)
	}
	return nil
}

// UpdateVM applies fn to a VM's desired state and stores the result if
// nothing else changed it meanwhile (retrying a few times); ErrNotFound when
// there is no such VM. fn's error aborts the update and is returned.
func (s *Store) UpdateVM(ctx context.Context, name string, fn func(d *Desired) error) (Desired, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	for range 5 {
		r, err := s.GetVM(ctx, name)
		if err != nil {
			return Desired{}, err
		}
		d := r.Desired
		if err := fn(&d); err != nil {
			return Desired{}, err
		}
		b, err := json.Marshal(d)
		if err != nil {
			return Desired{}, fmt.Errorf("store: encode %s: %w", name, err)
		}
		k := specKey(name)
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(k), "=", r.SpecRev)).
			Then(clientv3.OpPut(k, string(b))).
			Commit()
		if err != nil {
			return Desired{}, s.fail("update "+name, err)
		}
		if resp.Succeeded {
			return d, nil
		}
	}
	return Desired{}, fmt.Errorf("%w: %s", ErrConflict, name)
}

// GetVM reads one VM.
func (s *Store) GetVM(ctx context.Context, name string) (Record, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, vmPrefix+name+"/", clientv3.WithPrefix())
	if err != nil {
		return Record{}, s.fail("get "+name, err)
	}
	recs, err := decodeVMs(resp.Kvs)
	if err != nil {
		return Record{}, err
	}
	if len(recs) != 1 || recs[0].Desired.Spec.Name != name {
		return Record{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return recs[0], nil
}

// ListVMs reads every VM, sorted by name, and the etcd revision of the read.
func (s *Store) ListVMs(ctx context.Context) ([]Record, int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, vmPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, s.fail("list VMs", err)
	}
	recs, err := decodeVMs(resp.Kvs)
	return recs, resp.Header.Revision, err
}

// PutStatus records a VM's observed state; ErrNotFound when the VM is gone
// (so that an agent never resurrects a deleted VM's status).
func (s *Store) PutStatus(ctx context.Context, name string, st api.VMStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("store: encode status of %s: %w", name, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(specKey(name)), ">", 0)).
		Then(clientv3.OpPut(statusKey(name), string(b))).
		Commit()
	if err != nil {
		return s.fail("put status of "+name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return nil
}

// ReplaceStatus records a VM's observed state only if the status key is
// still at revision rev (0: absent); ErrConflict otherwise. Writers that
// decided from a snapshot use it so as not to overwrite a newer status.
func (s *Store) ReplaceStatus(ctx context.Context, name string, st api.VMStatus, rev int64) error {
	return s.putStatusIf(ctx, name, st, "status of "+name+" changed",
		clientv3.Compare(clientv3.CreateRevision(specKey(name)), ">", 0),
		clientv3.Compare(clientv3.ModRevision(statusKey(name)), "=", rev))
}

// putStatusIf records a VM's observed state if every condition holds;
// ErrConflict, saying changed, otherwise.
func (s *Store) putStatusIf(ctx context.Context, name string, st api.VMStatus, changed string, conds ...clientv3.Cmp) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("store: encode status of %s: %w", name, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(conds...).Then(clientv3.OpPut(statusKey(name), string(b))).Commit()
	if err != nil {
		return s.fail("put status of "+name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: %s", ErrConflict, changed)
	}
	return nil
}

// DeleteVM removes a VM if check accepts its current record and neither
// key changes between the check and the delete.
func (s *Store) DeleteVM(ctx context.Context, name string, check func(Record) error) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	for range 5 {
		r, err := s.GetVM(ctx, name)
		if err != nil {
			return err
		}
		if err := check(r); err != nil {
			return err
		}
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(specKey(name)), "=", r.SpecRev),
				clientv3.Compare(clientv3.ModRevision(statusKey(name)), "=", r.StatusRev)).
			Then(clientv3.OpDelete(vmPrefix+name+"/", clientv3.WithPrefix())).
			Commit()
		if err != nil {
			return s.fail("delete "+name, err)
		}
		if resp.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrConflict, name)
}

// decodeVMs groups spec and status keys by VM name. A status without a
// spec (left by an interrupted delete in an older version) is skipped.
func decodeVMs(kvs []*mvccKV) ([]Record, error) {
	var out []Record
	idx := map[string]int{}
	statuses := map[string]*mvccKV{}
	migrations := map[string]*mvccKV{}
	for _, kv := range kvs {
		name, kind, ok := splitKey(string(kv.Key))
		if !ok {
			continue
		}
		switch kind {
		case "spec":
			var d Desired
			if err := json.Unmarshal(kv.Value, &d); err != nil {
				return nil, fmt.Errorf("store: decode %s: %w", kv.Key, err)
			}
			idx[name] = len(out)
			out = append(out, Record{Desired: d, SpecRev: kv.ModRevision})
		case "status":
			statuses[name] = kv
		case "migration":
			migrations[name] = kv
		}
	}
	for name, kv := range migrations {
		i, ok := idx[name]
		if !ok {
			continue
		}
		m, err := decodeMigration(kv)
		if err != nil {
			return nil, err
		}
		if !m.Phase.Final() {
			out[i].Migration = &m
		}
	}
	for name, kv := range statuses {
		i, ok := idx[name]
		if !ok {
			continue
		}
		var st api.VMStatus
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			return nil, fmt.Errorf("store: decode %s: %w", kv.Key, err)
		}
		out[i].Status, out[i].StatusRev = &st, kv.ModRevision
	}
	return out, nil
}

// splitKey parses /govisor/vms/<name>/<kind>.
func splitKey(k string) (name, kind string, ok bool) {
	rest, found := strings.CutPrefix(k, vmPrefix)
	if !found {
		return "", "", false
	}
	name, kind, ok = strings.Cut(rest, "/")
	return name, kind, ok && name != "" && !strings.Contains(kind, "/")
}

type mvccKV = mvccpb.KeyValue
