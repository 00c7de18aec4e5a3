package node

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/hostnet"
)

// TAPAlias tags the TAPs this agent makes (IFLA_IFALIAS), so that it finds
// its leftovers and never touches another agent's.
func (n *Node) TAPAlias(vm string, i int) string {
	return n.tapAliasPrefix() + vm + ":" + strconv.Itoa(i)
}

func (n *Node) tapAliasPrefix() string { return "govisor:tap:" + n.id + ":" }

// setupNICs makes the TAP of each of s's NICs and enslaves it to its
// network's bridge (making the bridge if the reconciler has not yet).
func (n *Node) setupNICs(s api.VMSpec) error {
	if len(s.NICs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	for i, nic := range s.NICs {
		nw, err := n.st.GetNetwork(ctx, nic.Network)
		if err != nil {
			return fmt.Errorf("agent: NIC %d of %s: %w", i, s.Name, err)
		}
		if _, err := hostnet.EnsureBridge(n.BridgeOf(nw)); err != nil {
			return fmt.Errorf("agent: network %s of %s: %w", nw.Name, s.Name, err)
		}
		uid, gid := n.tapOwner(s.Name) // a jailed VMM has no CAP_NET_ADMIN
		tap := hostnet.TAP{Name: TAPName(s.Name, i), Bridge: nw.Bridge, Owner: uid, Group: gid, Alias: n.TAPAlias(s.Name, i)}
		if _, err := hostnet.EnsureTAP(tap); err != nil {
			return fmt.Errorf("agent: NIC %d of %s: %w", i, s.Name, err)
		}
	}
	return nil
}

// teardownNICs removes the TAPs this agent made for the VM name.
func (n *Node) teardownNICs(name string) {
	ls, err := hostnet.Links(n.tapAliasPrefix() + name + ":")
	if err != nil {
		n.log.Warn("list TAPs", "vm", name, "err", err)
		return
	}
	for _, l := range ls {
		if err := hostnet.DeleteTAP(l.Name); err != nil {
			n.log.Warn("delete TAP", "vm", name, "tap", l.Name, "err", err)
		}
	}
}

// gcTAPsLocked removes this agent's TAPs of VMs without a VMM (left by a
// crash, a failed start or a VM deleted meanwhile), sparing the VMMs that
// wait for an incoming live migration; n.mu is held, so no start runs
// concurrently.
func (n *Node) gcTAPsLocked() {
	ls, err := hostnet.Links(n.tapAliasPrefix())
	n.noteNetError("list TAPs", err)
	for _, l := range ls {
		rest := strings.TrimPrefix(l.Alias, n.tapAliasPrefix())
		vm := rest[:max(strings.LastIndexByte(rest, ':'), 0)]
		if n.procs[vm] != nil || n.incoming[vm] != nil || l.Kind != "tuntap" {
			continue
		}
		n.log.Info("removing the TAP of a VM that is not running", "vm", vm, "tap", l.Name)
		n.noteNetError("delete TAP "+l.Name, hostnet.DeleteTAP(l.Name))
	}
}

// startFailed records a start that failed before the VMM ran; n.mu is held.
func (n *Node) startFailed(name string, err error) {
	n.log.Error("start VM", "vm", name, "err", err)
	n.delayRestart(name)
	go n.putStatus(name, api.VMStatus{State: api.StateFailed, Host: n.cfg.HostName, Since: time.Now().UTC(), ExitReason: err.Error()})
}

// bridgeAliasPrefix tags the bridges this agent creates for networks:
// only those are deleted with their network (a bridge a user or another
// agent on the host made is left alone).
func (n *Node) bridgeAliasPrefix() string { return "govisor:net:" + n.id + ":" }

// BridgeOf is the hostnet description of a network's bridge.
func (n *Node) BridgeOf(nw api.Network) hostnet.Bridge {
	b := hostnet.Bridge{Name: nw.Bridge, Alias: n.bridgeAliasPrefix() + nw.Name}
	if nw.CIDR != "" {
		b.Addr, _ = netip.ParsePrefix(nw.CIDR) // checked by the network's validation
	}
	return b
}

// RemoveBridge deletes nw's bridge if an agent made it for nw.
func (n *Node) RemoveBridge(nw api.Network) {
	l, err := hostnet.Get(nw.Bridge)
	if err != nil || l.Alias != n.bridgeAliasPrefix()+nw.Name {
		return
	}
	if err := hostnet.DeleteBridge(nw.Bridge); err != nil {
		n.log.Warn("delete bridge", "network", nw.Name, "bridge", nw.Bridge, "err", err)
	}
}

// LockNetworks keeps the network reconciler from running until the
// returned func is called: hold it from making a network's bridge until
// its definition is stored (and while one is deleted).
func (n *Node) LockNetworks() (unlock func()) {
	n.netMu.Lock()
	return n.netMu.Unlock
}

// reconcileNetworks gives this host a bridge for every defined network and
// removes the bridges agents made for networks no longer defined. Failures
// are logged once until they change (a pass runs every few seconds).
func (n *Node) reconcileNetworks(ctx context.Context) {
	defer n.LockNetworks()()
	nets, err := n.st.ListNetworks(ctx)
	if err != nil {
		return // the VM pass logs store failures
	}
	want := map[string]string{} // bridge -> network
	for _, nw := range nets {
		want[nw.Bridge] = nw.Name
		_, err := hostnet.EnsureBridge(n.BridgeOf(nw))
		n.noteNetError("network "+nw.Name, err)
	}
	ours, err := hostnet.Links(n.bridgeAliasPrefix())
	n.noteNetError("list bridges", err)
	for _, l := range ours {
		network := strings.TrimPrefix(l.Alias, n.bridgeAliasPrefix())
		if l.Kind == "bridge" && want[l.Name] != network {
			n.log.Info("removing the bridge of a deleted network", "bridge", l.Name, "network", network)
			n.noteNetError("delete bridge "+l.Name, hostnet.DeleteBridge(l.Name))
		}
	}
}

// netErrs holds the last host networking error per agent and object.
var netErrs sync.Map

// noteNetError logs err under key when it differs from the last one.
func (n *Node) noteNetError(key string, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	k := n.id + "\x00" + key
	old, _ := netErrs.Load(k)
	if old == nil {
		old = ""
	}
	if old.(string) == msg {
		return
	}
	if msg == "" {
		netErrs.Delete(k)
		n.log.Info("host networking recovered", "what", key)
		return
	}
	netErrs.Store(k, msg)
	n.log.Warn("host networking", "what", key, "err", err)
}
