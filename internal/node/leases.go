package node

import (
	"fmt"
	"os"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/disklease"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// An HA VM holds a disk lease (package disklease) on each disk it writes,
// a second guard beside its host's etcd lease: HA restarts it on another
// host when that host stops answering, and the lease keeps the new VMM
// from opening a disk that a copy still alive there (hung agent, cut
// network with the storage still reachable) holds, as sanlock and VMFS
// locks do. It costs a restart elsewhere the lease's expiry time, paid
// only when the previous holder did not release it.

// leaseOwner is who holds VM name's disk leases on this host.
func (n *Node) leaseOwner(name string) string { return n.cfg.HostName + "/" + name }

// leaseDisks makes the VMM of s, configured by c, hold the leases of the
// disks its guest writes (HA VMs only), and has its jail hold their lease
// files; jail must have been applied to c. seen is what the HA controller
// saw of those leases before it restarted the VM here.
func (n *Node) leaseDisks(s api.VMSpec, c *vmmconfig.Config, seen map[string]store.LeaseSeen) error {
	if !s.HA {
		return nil
	}
	for i := range c.Disks {
		d := &c.Disks[i]
		if d.ReadOnly {
			continue
		}
		if err := n.leaseFile(d.Path, c); err != nil {
			return err
		}
		d.Lease = true
		c.LeaseOwner = n.leaseOwner(s.Name)
		if ls, ok := seen[d.Path]; ok {
			d.LeaseSeen = &vmmconfig.LeaseSeen{Sum: ls.Sum, ForMS: ls.ForMS}
		}
	}
	return nil
}

// adoptLeases makes the incoming VMM of s (shared storage), configured by
// c, take over the leases of the disks its guest writes at the handover,
// as the source hands them over with nonce (0: the source holds none).
func (n *Node) adoptLeases(s api.VMSpec, c *vmmconfig.Config, nonce uint64) error {
	if !s.HA || nonce == 0 {
		return nil
	}
	a := &vmmconfig.AdoptLeases{Nonce: nonce}
	for _, d := range s.Disks {
		if d.ReadOnly {
			continue
		}
		if err := n.leaseFile(d.Path, c); err != nil {
			return err
		}
		a.Disks = append(a.Disks, d.Path)
	}
	if len(a.Disks) > 0 {
		c.AdoptLeases, c.LeaseOwner = a, n.leaseOwner(s.Name)
	}
	return nil
}

// leaseFile makes sure disk's lease file exists (a jail binds only files
// that do, and a jailed VMM may create none beside its disks) and has c's
// jail hold it.
func (n *Node) leaseFile(disk string, c *vmmconfig.Config) error {
	p := disklease.Path(disk)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("agent: the disk lease of %s: %w", disk, err)
	}
	f.Close()
	if c.Jail != nil {
		c.Jail.Files = append(c.Jail.Files, p)
	}
	return nil
}
