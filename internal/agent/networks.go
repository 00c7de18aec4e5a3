package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/hostnet"
)

// normalizeNetwork checks a network definition and fills in its defaults.
func normalizeNetwork(n api.Network) (api.Network, error) {
	n.UsedBy = nil
	if !nameRE.MatchString(n.Name) {
		return n, fieldErr("name", fmt.Sprintf("%q: use 1-63 lower-case letters, digits and '-' (a DNS label)", n.Name))
	}
	switch n.Kind {
	case "":
		n.Kind = api.NetworkBridge
	case api.NetworkBridge:
	default:
		return n, fieldErr("kind", fmt.Sprintf("%q: the only kind is bridge", n.Kind))
	}
	if n.Bridge == "" {
		n.Bridge = "gv-" + n.Name
		if hostnet.ValidName(n.Bridge) != nil {
			return n, fieldErr("bridge", fmt.Sprintf("required: gv-%s is longer than 15 characters; name the bridge device", n.Name))
		}
	}
	if err := hostnet.ValidName(n.Bridge); err != nil {
		return n, fieldErr("bridge", err.Error())
	}
	if n.CIDR != "" {
		p, err := netip.ParsePrefix(n.CIDR)
		if err != nil {
			return n, fieldErr("cidr", fmt.Sprintf("%q: want the host's address and prefix length, such as 169.254.0.1/16", n.CIDR))
		}
		bits := p.Addr().BitLen()
		if p.Bits() < bits-1 && (p.Addr() == p.Masked().Addr()) {
			return n, fieldErr("cidr", fmt.Sprintf("%s is the network's own address; give the host's address in it, such as %s", n.CIDR, p.Masked().Addr().Next()))
		}
		n.CIDR = p.String()
	}
	return n, nil
}

// netErr makes a hostnet failure an API error: a conflicting device is a
// 409, anything else a 500 naming the device.
func netErr(err error) error {
	switch {
	case errors.Is(err, hostnet.ErrConflict):
		return errf(store.ErrConflict, "%v", err) // a 409
	case errors.Is(err, hostnet.ErrName):
		return fieldErr("bridge", err.Error())
	}
	return err
}

// netUsers lists the VMs with a NIC on network name.
func netUsers(recs []store.Record, name string) []string {
	var vms []string
	for _, r := range recs {
		for _, nic := range r.Desired.Spec.NICs {
			if nic.Network == name {
				vms = append(vms, r.Desired.Spec.Name)
				break
			}
		}
	}
	return vms
}

// CreateNetwork defines a network and makes its bridge on this host.
func (a *Agent) CreateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	n, err := normalizeNetwork(n)
	if err == nil {
		err = a.checkNewNetwork(ctx, n)
	}
	if err != nil {
		return api.Network{}, err
	}
	// The bridge first: a device that contradicts the definition fails the
	// request before anything is stored.
	created, err := hostnet.EnsureBridge(a.node.BridgeOf(n))
	if err != nil {
		return api.Network{}, netErr(err)
	}
	if err := a.st.CreateNetwork(ctx, n); err != nil {
		if created {
			hostnet.DeleteBridge(n.Bridge)
		}
		return api.Network{}, err
	}
	a.log.Info("network defined", "network", n.Name, "bridge", n.Bridge, "cidr", n.CIDR)
	return n, nil
}

// checkNewNetwork refuses a taken name or a bridge another network uses.
func (a *Agent) checkNewNetwork(ctx context.Context, n api.Network) error {
	nets, err := a.st.ListNetworks(ctx)
	if err != nil {
		return err
	}
	for _, o := range nets {
		switch {
		case o.Name == n.Name:
			return errf(store.ErrExists, "network %s already exists", n.Name)
		case o.Bridge == n.Bridge:
			return errf(store.ErrExists, "bridge %s is already network %s's", n.Bridge, o.Name)
		}
	}
	return nil
}

// ListNetworks lists the networks with the VMs that use them.
func (a *Agent) ListNetworks(ctx context.Context) (api.NetworkList, error) {
	nets, err := a.st.ListNetworks(ctx)
	var recs []store.Record
	if err == nil {
		recs, _, err = a.st.ListVMs(ctx)
	}
	if err != nil {
		return api.NetworkList{}, err
	}
	out := api.NetworkList{Items: []api.Network{}}
	for _, n := range nets {
		n.UsedBy = netUsers(recs, n.Name)
		out.Items = append(out.Items, n)
	}
	return out, nil
}

// GetNetwork reads one network with the VMs that use it.
func (a *Agent) GetNetwork(ctx context.Context, name string) (api.Network, error) {
	n, err := a.st.GetNetwork(ctx, name)
	var recs []store.Record
	if err == nil {
		recs, _, err = a.st.ListVMs(ctx)
	}
	if err != nil {
		return api.Network{}, err
	}
	n.UsedBy = netUsers(recs, name)
	return n, nil
}

// DeleteNetwork forgets a network no VM uses and removes its bridge here.
func (a *Agent) DeleteNetwork(ctx context.Context, name string) error {
	n, err := a.st.GetNetwork(ctx, name)
	if err == nil {
		err = a.st.DeleteNetwork(ctx, name, func(recs []store.Record) error {
			if vms := netUsers(recs, name); len(vms) > 0 {
				return errf(ErrBusy, "network %s is in use by VMs %s: remove their NICs or delete them first", name, strings.Join(vms, ", "))
			}
			return nil
		})
	}
	if err != nil {
		return err
	}
	// This host's bridge goes now; other hosts' agents remove theirs on
	// their next reconcile pass.
	a.node.RemoveBridge(n)
	a.log.Info("network deleted", "network", name)
	return nil
}
