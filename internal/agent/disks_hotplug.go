package agent

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/jail"
	"github.com/govisor/govisor/internal/node"
	"github.com/govisor/govisor/internal/vmmapi"
)

// Disk hotplug: POST /v1/vms/{name}/disks adds a disk to a VM's definition
// and, if the VM runs, plugs it into the guest at once (ACPI PCI hotplug);
// DELETE /v1/vms/{name}/disks/{index} removes disks[index] from the
// definition and, if the VM runs, asks the guest to eject it.

// diskHotplugTimeout bounds one VMM disk call (opening an image is quick).
const diskHotplugTimeout = 30 * time.Second

// diskService implements service.Disks: disk hotplug into this host's
// VMs.
type diskService struct {
	vmAccess
	hostMiB uint64 // this host's RAM (a changed definition is checked whole)
}

var _ service.Disks = (*diskService)(nil)

// hotState says what a disk change does to VM rec: plug into the running
// guest (live), change only the definition (a VM that is not running), or
// wait (the VMM is starting, stopping or migrating: ErrBusy).
func (ds *diskService) hotState(rec store.Record, action string) (p *node.Proc, live bool, err error) {
	st := api.StatePending
	if rec.Status != nil {
		st = rec.Status.State
	}
	switch st {
	case api.StateRunning, api.StatePaused:
		p, err := ds.liveProc(rec, action, api.StateRunning, api.StatePaused)
		return p, err == nil, err
	case api.StateStopped, api.StateFailed:
		return nil, false, nil
	}
	if rec.Desired.Power == api.PowerStopped && rec.Status == nil {
		return nil, false, nil // defined, never started
	}
	return nil, false, fmt.Errorf("%w: cannot %s VM %s while it is %s: try again when it runs or has stopped", ErrBusy, action, rec.Desired.Spec.Name, st)
}

// AttachDisk adds a disk to VM name's definition and, if the VM runs,
// plugs it into the guest at once.
func (ds *diskService) AttachDisk(ctx context.Context, name string, d api.DiskSpec) (api.VM, error) {
	rec, err := ds.localVM(ctx, name)
	if err != nil {
		return api.VM{}, err
	}
	// Validate the disk as part of the whole definition, as a create would
	// (pool volumes resolved to paths, files checked).
	s := rec.Desired.Spec
	s.Disks = append(append([]api.DiskSpec(nil), s.Disks...), d)
	s, err = resolveSpec(ctx, ds.st, ds.host, s)
	if err == nil {
		s, err = normalize(s, ds.hostMiB)
	}
	if err != nil {
		return api.VM{}, err
	}
	d = s.Disks[len(s.Disks)-1]
	p, live, err := ds.hotState(rec, "attach a disk to")
	if err != nil {
		return api.VM{}, err
	}
	if live {
		cctx, cancel := context.WithTimeout(ctx, diskHotplugTimeout)
		defer cancel()
		if p.JailInstance != "" {
			// A jailed VMM sees only its own files: bind the image into
			// its jail, at its own path.
			uid, gid := jail.IDs(p.Jail)
			if err := jail.AddFile(p.JailInstance, d.Path, d.ReadOnly, uid, gid); err != nil {
				return api.VM{}, fmt.Errorf("%w: attach %s to %s: %v", ErrVMM, d.Path, name, err)
			}
		}
		req := vmmapi.DiskRequest{Path: d.Path, ReadOnly: d.ReadOnly, Format: d.Format}
		if _, err := p.VMM.AttachDisk(cctx, req); err != nil {
			return api.VM{}, fmt.Errorf("%w: attach %s to %s: %v", ErrVMM, d.Path, name, err)
		}
	}
	n := len(rec.Desired.Spec.Disks)
	_, err = ds.st.UpdateVM(ctx, name, func(dd *store.Desired) error {
		if len(dd.Spec.Disks) != n {
			return fmt.Errorf("%w: the disks of VM %s changed meanwhile", store.ErrConflict, name)
		}
		dd.Spec.Disks = append(dd.Spec.Disks, d)
		return nil
	})
	if err != nil {
		return api.VM{}, fmt.Errorf("agent: record the new disk of %s (the running guest has it): %w", name, err)
	}
	return ds.current(ctx, name)
}

// DetachDisk removes disks[index] from VM name's definition and, if the VM
// runs, asks the guest to eject it.
func (ds *diskService) DetachDisk(ctx context.Context, name, index string) (api.VM, error) {
	rec, err := ds.localVM(ctx, name)
	if err != nil {
		return api.VM{}, err
	}
	disks := rec.Desired.Spec.Disks
	i, err := strconv.Atoi(index)
	if err != nil || i < 0 || i >= len(disks) {
		if len(disks) == 0 {
			return api.VM{}, errf(store.ErrNotFound, "VM %s has no disks", name)
		}
		return api.VM{}, errf(store.ErrNotFound, "VM %s has no disk %q: give an index from 0 to %d", name, index, len(disks)-1)
	}
	path := disks[i].Path
	p, live, err := ds.hotState(rec, "detach a disk from")
	if err != nil {
		return api.VM{}, err
	}
	if live {
		if err := ds.detachLive(ctx, p, name, i, path); err != nil {
			return api.VM{}, err
		}
	}
	_, err = ds.st.UpdateVM(ctx, name, func(dd *store.Desired) error {
		if i >= len(dd.Spec.Disks) || dd.Spec.Disks[i].Path != path {
			return fmt.Errorf("%w: the disks of VM %s changed meanwhile", store.ErrConflict, name)
		}
		dd.Spec.Disks = append(dd.Spec.Disks[:i:i], dd.Spec.Disks[i+1:]...)
		return nil
	})
	if err != nil {
		return api.VM{}, err
	}
	return ds.current(ctx, name)
}

// detachLive asks the VMM of VM name to have the guest eject the disk
// with the given path; disks the VM booted with cannot be ejected.
func (ds *diskService) detachLive(ctx context.Context, p *node.Proc, name string, index int, path string) error {
	ctx, cancel := context.WithTimeout(ctx, diskHotplugTimeout)
	defer cancel()
	have, err := p.VMM.Disks(ctx)
	if err != nil {
		return fmt.Errorf("%w: list the disks of %s: %v", ErrVMM, name, err)
	}
	for _, d := range have {
		if d.Path != path {
			continue
		}
		if !d.Hotplugged {
			return fmt.Errorf("%w: disk %d (%s) of VM %s was attached when it started and cannot be ejected: stop the VM to remove it", ErrBusy, index, d.Name, name)
		}
		if err := p.VMM.DetachDisk(ctx, d.Name); err != nil {
			return fmt.Errorf("%w: detach %s from %s: %v", ErrVMM, d.Name, name, err)
		}
		return nil
	}
	return nil // not in the running guest (already ejected): only the definition changes
}
