package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/hostnet"
	"github.com/govisor/govisor/internal/node"
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

// networkService implements service.Networks: the networks' definitions
// in etcd and their bridges on this host.
type networkService struct {
	st   *store.Store
	node *node.Node // makes and removes this host's bridges
	log  *slog.Logger
}

var _ service.Networks = (*networkService)(nil)

// CreateNetwork defines a network and makes its bridge on this host.
func (ns *networkService) CreateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	n, err := normalizeNetwork(n)
	if err == nil {
		err = ns.checkNewNetwork(ctx, n)
	}
	if err != nil {
		return api.Network{}, err
	}
	// The bridge first: a device that contradicts the definition fails the
	// request before anything is stored. Until it is stored, the node's
	// network reconciler would take the new bridge for a deleted
	// network's: it waits.
	defer ns.node.LockNetworks()()
	created, err := hostnet.EnsureBridge(ns.node.BridgeOf(n))
	if err != nil {
		return api.Network{}, netErr(err)
	}
	if err := ns.st.CreateNetwork(ctx, n); err != nil {
		if created {
			hostnet.DeleteBridge(n.Bridge)
		}
		return api.Network{}, err
	}
	ns.log.Info("network defined", "network", n.Name, "bridge", n.Bridge, "cidr", n.CIDR)
	return n, nil
}

// checkNewNetwork refuses a taken name or a bridge another network uses.
func (ns *networkService) checkNewNetwork(ctx context.Context, n api.Network) error {
	nets, err := ns.st.ListNetworks(ctx)
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
func (ns *networkService) ListNetworks(ctx context.Context) (api.NetworkList, error) {
	nets, err := ns.st.ListNetworks(ctx)
	var recs []store.Record
	if err == nil {
		recs, _, err = ns.st.ListVMs(ctx)
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
func (ns *networkService) GetNetwork(ctx context.Context, name string) (api.Network, error) {
	n, err := ns.st.GetNetwork(ctx, name)
	var recs []store.Record
	if err == nil {
		recs, _, err = ns.st.ListVMs(ctx)
	}
	if err != nil {
		return api.Network{}, err
	}
	n.UsedBy = netUsers(recs, name)
	return n, nil
}

// DeleteNetwork forgets a network no VM uses and removes its bridge here.
func (ns *networkService) DeleteNetwork(ctx context.Context, name string) error {
	defer ns.node.LockNetworks()()
	n, err := ns.st.GetNetwork(ctx, name)
	if err == nil {
		err = ns.st.DeleteNetwork(ctx, name, func(recs []store.Record) error {
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
	ns.node.RemoveBridge(n)
	ns.log.Info("network deleted", "network", name)
	return nil
}
