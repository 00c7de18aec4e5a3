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
	"slices"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/node"
)

// The agent serves every operation of the API.
var _ service.Services = (*Agent)(nil)

func toAPI(r store.Record) api.VM {
	v := api.VM{Spec: r.Desired.Spec, Desired: r.Desired.Power, Host: r.Desired.Host, Status: api.VMStatus{State: api.StatePending}}
	if r.Status != nil {
		v.Status = *r.Status
	}
	return v
}

// CreateVM defines a VM on this host, started unless start is false.
func (a *Agent) CreateVM(ctx context.Context, s api.VMSpec, opts service.CreateOptions) (api.VM, error) {
	s, err := a.resolveSpec(ctx, s)
	if err == nil {
		s, err = normalize(s, a.hostMiB)
	}
	if err != nil {
		return api.VM{}, err
	}
	host := a.cfg.HostName
	if opts.Host != "" {
		if host, err = a.placeNew(ctx, s, opts.Host); err != nil {
			return api.VM{}, err
		}
	} else if confs, err := a.st.HostConfigs(ctx); err != nil {
		return api.VM{}, err
	} else if confs[host].Maintenance {
		return api.VM{}, fmt.Errorf("%w: host %s is in maintenance: create the VM with host=auto (govisor vm create --host auto) or on another host", service.ErrNoHost, host)
	}
	d := store.Desired{Spec: s, Power: api.PowerRunning, Host: host}
	if opts.NoStart {
		d.Power = api.PowerStopped
	} else if err := a.admit(ctx, s, host); err != nil {
		return api.VM{}, err
	}
	if err := a.st.CreateVM(ctx, d); err != nil {
		return api.VM{}, err
	}
	a.poke()
	return toAPI(store.Record{Desired: d}), nil
}

// ApplyVM creates the VM or replaces its definition, keeping its power
// state; a new definition takes effect at the VM's next start.
func (a *Agent) ApplyVM(ctx context.Context, name string, s api.VMSpec) (api.VM, string, error) {
	var err error
	if s.Name != "" && s.Name != name {
		err = fieldErr("name", fmt.Sprintf("%q differs from %q in the URL", s.Name, name))
	}
	if err == nil {
		s.Name = name
		s, err = a.resolveSpec(ctx, s)
	}
	if err == nil {
		s, err = normalize(s, a.hostMiB)
	}
	if err != nil {
		return api.VM{}, "", err
	}
	result := service.Updated
	d, err := a.st.UpdateVM(ctx, name, func(d *store.Desired) error {
		if reflect.DeepEqual(d.Spec, s) {
			result = service.Unchanged
		}
		d.Spec = s
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		d = store.Desired{Spec: s, Power: api.PowerRunning, Host: a.cfg.HostName}
		err, result = a.st.CreateVM(ctx, d), service.Created
	}
	if err != nil {
		return api.VM{}, "", err
	}
	a.poke()
	rec, err := a.st.GetVM(ctx, name)
	if err != nil {
		rec = store.Record{Desired: d}
	}
	return toAPI(rec), result, nil
}

// ListVMs lists every VM of the cluster.
func (a *Agent) ListVMs(ctx context.Context) (api.VMList, error) {
	recs, _, err := a.st.ListVMs(ctx)
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
func (a *Agent) GetVM(ctx context.Context, name string) (api.VM, error) {
	rec, err := a.st.GetVM(ctx, name)
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
func (a *Agent) DeleteVM(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := a.st.DeleteVM(ctx, name, func(rec store.Record) error {
		live := a.node.Proc(name) != nil
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
	os.RemoveAll(a.vmDir(name))
	return nil
}

// ConsoleLog opens the last MiB of a VM's console output (nil when the VM
// never started).
func (a *Agent) ConsoleLog(ctx context.Context, name string) (io.ReadCloser, error) {
	if _, err := a.localVM(ctx, name); err != nil {
		return nil, err
	}
	f, err := os.Open(a.ConsolePath(name))
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
func (a *Agent) AttachConsole(ctx context.Context, name string) (net.Conn, error) {
	rec, err := a.localVM(ctx, name)
	if errors.Is(err, ErrNotHere) {
		return a.peerConsole(ctx, rec)
	}
	if err != nil {
		return nil, err
	}
	if _, err := a.liveProc(rec, "attach to the console of", api.StateRunning, api.StatePaused); err != nil {
		return nil, err
	}
	sock := filepath.Join(a.vmDir(name), node.ConsoleSock)
	vc, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w: console of %s: %v", ErrVMM, name, err)
	}
	return vc, nil
}

// Host describes this host, with its VMs and allocations.
func (a *Agent) Host(ctx context.Context) (api.Host, error) {
	recs, _, err := a.st.ListVMs(ctx)
	if err != nil {
		return api.Host{}, err
	}
	h := a.hostInfo()
	for _, rec := range recs {
		if rec.Desired.Host != h.Name {
			continue
		}
		h.VMs++
		if rec.Status != nil && rec.Status.State == api.StateRunning {
			h.RunningVMs++
		}
		if rec.Desired.Power == api.PowerRunning {
			mib, _ := api.ParseMemoryMiB(rec.Desired.Spec.Memory)
			h.AllocatedMiB += mib
		}
	}
	return h, nil
}

// Hosts lists the cluster's hosts: those with a live agent (ready), then
// those VMs still name whose lease expired (unreachable), each with the
// VMs assigned to it and their memory.
func (a *Agent) Hosts(ctx context.Context) (api.HostList, error) {
	hs, err := a.st.Hosts(ctx)
	if err != nil {
		return api.HostList{}, err
	}
	recs, _, err := a.st.ListVMs(ctx)
	if err != nil {
		return api.HostList{}, err
	}
	confs, err := a.st.HostConfigs(ctx)
	if err != nil {
		return api.HostList{}, err
	}
	loads, err := a.st.Loads(ctx)
	if err != nil {
		return api.HostList{}, err
	}
	leader, _ := a.st.Leader(ctx) // unknown leader: no host is marked
	list := api.HostList{Items: []api.Host{}}
	index := map[string]int{}
	for _, h := range hs {
		h.State, h.Leader = api.HostReady, h.Name == leader
		if l, ok := loads[h.Name]; ok {
			h.Load = &l
		}
		index[h.Name] = len(list.Items)
		list.Items = append(list.Items, h)
	}
	running := map[string]bool{}
	for _, r := range recs {
		name := r.Desired.Host
		if name == "" {
			continue
		}
		i, ok := index[name]
		if !ok {
			index[name] = len(list.Items)
			i = len(list.Items)
			list.Items = append(list.Items, api.Host{Name: name, State: api.HostUnreachable})
		}
		h := &list.Items[i]
		h.VMs++
		if r.Status != nil && r.Status.State == api.StateRunning && r.Status.Host == name {
			h.RunningVMs++
		}
		if r.Desired.Power == api.PowerRunning {
			mib, _ := api.ParseMemoryMiB(r.Desired.Spec.Memory)
			h.AllocatedMiB += mib
			running[name] = true
		}
	}
	for i := range list.Items {
		h := &list.Items[i]
		if c := confs[h.Name]; c.Maintenance && h.State == api.HostReady {
			h.State, h.Stuck = api.HostMaintenance, c.Stuck
			if running[h.Name] {
				h.State = api.HostEnteringMaintenance
			}
		}
	}
	return list, nil
}

// SetMaintenance asks for host to enter or leave maintenance mode; the
// leader's maintenance controller evacuates it.
func (a *Agent) SetMaintenance(ctx context.Context, host string, on bool) (api.Host, error) {
	list, err := a.Hosts(ctx)
	if err != nil {
		return api.Host{}, err
	}
	i := slices.IndexFunc(list.Items, func(h api.Host) bool { return h.Name == host })
	if i < 0 {
		return api.Host{}, fmt.Errorf("%w: %q is not in the cluster (see govisor host list)", service.ErrNoSuchHost, host)
	}
	if on && list.Items[i].State == api.HostUnreachable {
		return api.Host{}, fmt.Errorf("%w: host %s is unreachable: its VMs cannot be live-migrated (HA restarts its HA VMs elsewhere)", service.ErrInvalid, host)
	}
	if err := a.st.SetMaintenance(ctx, host, on); err != nil {
		return api.Host{}, err
	}
	why := fmt.Sprintf("maintenance asked for host %s: its VMs are live-migrated away and it takes no new ones", host)
	if !on {
		why = fmt.Sprintf("host %s leaves maintenance: it takes VMs again", host)
	}
	a.event(api.ClusterEvent{Kind: api.EventMaintenance, Host: host, Reason: why})
	if list, err = a.Hosts(ctx); err != nil {
		return api.Host{}, err
	}
	for _, h := range list.Items {
		if h.Name == host {
			return h, nil
		}
	}
	return api.Host{}, fmt.Errorf("%w: host %s left the cluster", service.ErrNoSuchHost, host)
}
