package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/node"
)

// vmService implements service.VMs: VM definitions, power actions and
// consoles.
type vmService struct {
	vmAccess
	hostMiB uint64       // this host's RAM, which bounds a definition's memory
	place   placer       // placement and admission control of new and started VMs
	peers   *peerClients // other hosts' agents, for consoles of their VMs
}

// placer places new VMs and admits VMs that start (the cluster's
// placement and admission control, place.go).
type placer interface {
	placeNew(ctx context.Context, s api.VMSpec, want string) (string, error)
	admit(ctx context.Context, s api.VMSpec, host string) error
}

var _ service.VMs = (*vmService)(nil)

// toAPI is the API's view of a VM's record.
func toAPI(r store.Record) api.VM {
	v := api.VM{Spec: r.Desired.Spec, Desired: r.Desired.Power, Host: r.Desired.Host, Status: api.VMStatus{State: api.StatePending}}
	if r.Status != nil {
		v.Status = *r.Status
	}
	return v
}

// CreateVM defines a VM on this host (or where opts say), started unless
// opts say not to.
func (vs *vmService) CreateVM(ctx context.Context, s api.VMSpec, opts service.CreateOptions) (api.VM, error) {
	s, err := resolveSpec(ctx, vs.st, vs.host, s)
	if err == nil {
		s, err = normalize(s, vs.hostMiB)
	}
	if err != nil {
		return api.VM{}, err
	}
	if s.UUID == "" {
		s.UUID = uuid.NewString()
	} else if err := uuidFree(ctx, vs.st, s.UUID, s.Name); err != nil {
		return api.VM{}, err
	}
	host := vs.host
	if opts.Host != "" {
		if host, err = vs.place.placeNew(ctx, s, opts.Host); err != nil {
			return api.VM{}, err
		}
	} else if confs, err := vs.st.HostConfigs(ctx); err != nil {
		return api.VM{}, err
	} else if confs[host].Maintenance {
		return api.VM{}, fmt.Errorf("%w: host %s is in maintenance: create the VM with host=auto (govisor vm create --host auto) or on another host", service.ErrNoHost, host)
	}
	d := store.Desired{Spec: s, Power: api.PowerRunning, Host: host}
	if opts.NoStart {
		d.Power = api.PowerStopped
	} else if err := vs.place.admit(ctx, s, host); err != nil {
		return api.VM{}, err
	}
	if err := vs.st.CreateVM(ctx, d); err != nil {
		return api.VM{}, err
	}
	vs.poke()
	return toAPI(store.Record{Desired: d}), nil
}

// ApplyVM creates the VM or replaces its definition, keeping its power
// state; a new definition takes effect at the VM's next start.
func (vs *vmService) ApplyVM(ctx context.Context, name string, s api.VMSpec) (api.VM, string, error) {
	var err error
	if s.Name != "" && s.Name != name {
		err = fieldErr("name", fmt.Sprintf("%q differs from %q in the URL", s.Name, name))
	}
	if err == nil {
		s.Name = name
		s, err = resolveSpec(ctx, vs.st, vs.host, s)
	}
	if err == nil {
		s, err = normalize(s, vs.hostMiB)
	}
	if err != nil {
		return api.VM{}, "", err
	}
	if s.UUID != "" {
		if err := uuidFree(ctx, vs.st, s.UUID, name); err != nil {
			return api.VM{}, "", err
		}
	}
	result := service.Updated
	d, err := vs.st.UpdateVM(ctx, name, func(d *store.Desired) error {
		if s.UUID == "" {
			s.UUID = d.Spec.UUID // the machine keeps its identity
		}
		if reflect.DeepEqual(d.Spec, s) {
			result = service.Unchanged
		}
		d.Spec = s
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		if s.UUID == "" {
			s.UUID = uuid.NewString()
		}
		d = store.Desired{Spec: s, Power: api.PowerRunning, Host: vs.host}
		err, result = vs.st.CreateVM(ctx, d), service.Created
	}
	if err != nil {
		return api.VM{}, "", err
	}
	vs.poke()
	rec, err := vs.st.GetVM(ctx, name)
	if err != nil {
		rec = store.Record{Desired: d}
	}
	return toAPI(rec), result, nil
}

// ListVMs lists every VM of the cluster.
func (vs *vmService) ListVMs(ctx context.Context) (api.VMList, error) {
	recs, _, err := vs.st.ListVMs(ctx)
	if err != nil {
		return api.VMList{}, err
	}
	out := api.VMList{Items: []api.VM{}}
	for _, rec := range recs {
		out.Items = append(out.Items, toAPI(rec))
	}
	return out, nil
}

// GetVM reads one VM.
func (vs *vmService) GetVM(ctx context.Context, name string) (api.VM, error) {
	rec, err := vs.st.GetVM(ctx, name)
	if err != nil {
		return api.VM{}, err
	}
	return toAPI(rec), nil
}

// checkName refuses (as not found) names no VM can have; names become
// paths under the state directory.
func checkName(name string) error {
	if nameRE.MatchString(name) {
		return nil
	}
	return fmt.Errorf("%w: %q", store.ErrNotFound, name)
}

// DeleteVM forgets a stopped VM and removes its files on this host.
func (vs *vmService) DeleteVM(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := vs.st.DeleteVM(ctx, name, func(rec store.Record) error {
		live := vs.node.Proc(name) != nil
		st := api.StatePending
		if rec.Status != nil {
			st = rec.Status.State
		}
		if rec.Desired.Power != api.PowerStopped || live || st == api.StateRunning || st == api.StatePaused || st == api.StateStopping {
			return fmt.Errorf("%w: VM %s is %s (desired %s): stop it first", ErrBusy, name, st, rec.Desired.Power)
		}
		return nil
	})
	if err != nil {
		return err
	}
	os.RemoveAll(vs.vmDir(name))
	return nil
}

// ConsoleLog opens the last MiB of a VM's console output (nil when the VM
// never started).
func (vs *vmService) ConsoleLog(ctx context.Context, name string) (io.ReadCloser, error) {
	if _, err := vs.localVM(ctx, name); err != nil {
		return nil, err
	}
	f, err := os.Open(vs.node.ConsolePath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: console of %s: %w", name, err)
	}
	// The last MiB at most: a chatty guest's log grows without bound.
	if fi, err := f.Stat(); err == nil && fi.Size() > maxBody {
		f.Seek(fi.Size()-maxBody, io.SeekStart)
	}
	return f, nil
}

// AttachConsole connects to the VMM's console socket of a running or
// paused VM (`govisor run --console-sock`): what is written goes to the
// guest's serial input, and the guest's serial output can be read. A VM
// of another host is reached through that host's agent.
func (vs *vmService) AttachConsole(ctx context.Context, name string) (net.Conn, error) {
	rec, err := vs.localVM(ctx, name)
	if errors.Is(err, ErrNotHere) {
		return vs.peerConsole(ctx, rec)
	}
	if err != nil {
		return nil, err
	}
	if _, err := vs.liveProc(rec, "attach to the console of", api.StateRunning, api.StatePaused); err != nil {
		return nil, err
	}
	sock := filepath.Join(vs.vmDir(name), node.ConsoleSock)
	vc, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w: console of %s: %v", ErrVMM, name, err)
	}
	return vc, nil
}

// uuidFree fails when a VM other than name has UUID u: two machines with
// one SMBIOS UUID confuse guests, licences and management tools alike
// (libvirt refuses such a definition too).
func uuidFree(ctx context.Context, st *store.Store, u, name string) error {
	other, err := uuidOwner(ctx, st, u, name)
	if err != nil || other == "" {
		return err
	}
	return fieldErr("uuid", fmt.Sprintf("%s is the UUID of VM %s already: give this VM another one, or leave uuid out for a new one", u, other))
}

// uuidOwner names the VM other than name whose UUID is u ("" if none).
func uuidOwner(ctx context.Context, st *store.Store, u, name string) (string, error) {
	recs, _, err := st.ListVMs(ctx)
	if err != nil {
		return "", err
	}
	for _, r := range recs {
		if r.Desired.Spec.Name != name && strings.EqualFold(r.Desired.Spec.UUID, u) {
			return r.Desired.Spec.Name, nil
		}
	}
	return "", nil
}
