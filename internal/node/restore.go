package node

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/vmmapi"
)

// errSameDisks ends an update of a restored VM's definition that would
// not change it.
var errSameDisks = errors.New("agent: the definition already lists the restored disks")

// restoreDiskWait bounds how long the agent waits for a restored VMM's API
// to list its disks.
const restoreDiskWait = time.Minute

// syncRestoredDisks brings the definition of VM name in line with the
// disks of its VMM p, just restored from a snapshot: the snapshot's
// hot-plugged disks are back in the guest (and disks attached after the
// snapshot are not), so the definition must list what the guest has, or a
// later detach, migration or restart would act on the wrong disks.
func (n *Node) syncRestoredDisks(p *Proc) {
	ctx, cancel := context.WithTimeout(n.ctx, restoreDiskWait)
	defer cancel()
	var have []vmmapi.Disk
	for {
		var err error
		if have, err = p.VMM.Disks(ctx); err == nil {
			break
		}
		select {
		case <-p.Done():
			return
		case <-ctx.Done():
			n.log.Warn("restored VM: could not list its disks; its definition may not match them", "vm", p.Name, "err", err)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	_, err := n.st.UpdateVM(ctx, p.Name, func(dd *store.Desired) error {
		disks := restoredDisks(dd.Spec.Disks, have)
		if slices.Equal(disks, dd.Spec.Disks) {
			return errSameDisks // nothing to write
		}
		dd.Spec.Disks = disks
		return nil
	})
	if err != nil && !errors.Is(err, errSameDisks) {
		n.log.Warn("restored VM: record its disks", "vm", p.Name, "err", err)
	}
}

// restoredDisks returns the definition's disks for a guest that has the
// disks have: in the VMM's order (boot disks, then hot-plugged ones as
// attached, as migrations mirror them), keeping the definition's entry
// for each path it has (a pool volume stays one). Disks the guest was
// asked to eject are left out, as a detach leaves them out.
func restoredDisks(spec []api.DiskSpec, have []vmmapi.Disk) []api.DiskSpec {
	out := make([]api.DiskSpec, 0, len(have))
	for _, h := range have {
		if h.State == "detaching" {
			continue
		}
		d := api.DiskSpec{Path: h.Path, ReadOnly: h.ReadOnly, Format: h.Format}
		for _, s := range spec {
			if s.Path == h.Path {
				d = s
				break
			}
		}
		out = append(out, d)
	}
	return out
}
