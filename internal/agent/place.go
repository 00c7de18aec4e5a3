package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/view"
)

// placeNew picks the host of a new VM s: want is service.PlaceAuto (the
// host placement picks among the live hosts) or a host's name (checked by
// placement, so that a full or unsuitable host is refused with its
// reasons).
func (a *Agent) placeNew(ctx context.Context, s api.VMSpec, want string) (string, error) {
	hosts, err := a.st.Hosts(ctx)
	if err != nil {
		return "", err
	}
	pools, err := a.st.ListPools(ctx)
	if err != nil {
		return "", err
	}
	recs, _, err := a.st.ListVMs(ctx)
	if err != nil {
		return "", err
	}
	confs, err := a.st.HostConfigs(ctx)
	if err != nil {
		return "", err
	}
	hosts = view.InMaintenance(hosts, func(h string) bool { return confs[h].Maintenance })
	var vms []view.VM
	for _, r := range recs {
		vms = append(vms, view.VM{Spec: r.Desired.Spec, Power: r.Desired.Power, Host: r.Desired.Host})
	}
	st, err := placement.New(view.Cluster(hosts, pools, vms, nil), placement.Config{})
	if err != nil {
		return "", fmt.Errorf("agent: cluster snapshot for placement: %w", err)
	}
	// A new VM has no host of its own: disks outside every pool must then
	// be on the host that runs it, which placement cannot know; they are
	// left out of its storage filter.
	vm := view.PlacementVM(view.VM{Spec: s, Power: api.PowerRunning}, pools)
	vm.Pools = knownPools(vm.Pools, pools)
	if want == service.PlaceAuto {
		host, err := st.Choose(vm)
		if errors.Is(err, placement.ErrNoHost) {
			return "", fmt.Errorf("%w: %v", service.ErrNoHost, err)
		}
		return host, err
	}
	rej, err := st.Check(vm, want)
	if err != nil {
		return "", fmt.Errorf("%w: %v", service.ErrInvalid, err)
	}
	if rej != nil {
		return "", fmt.Errorf("%w: %s", service.ErrNoHost, rej)
	}
	return want, nil
}

// knownPools keeps the names of real pools.
func knownPools(names []string, pools []api.Pool) []string {
	var out []string
	for _, n := range names {
		for _, p := range pools {
			if p.Name == n {
				out = append(out, n)
				break
			}
		}
	}
	return out
}
