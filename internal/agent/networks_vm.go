package agent

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"strconv"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
)

// maxNICs bounds a VM's virtio-net interfaces (each takes a PCI slot).
const maxNICs = 8

// derivedMAC is the MAC of a VM's NIC i when the definition gives none: a
// locally administered unicast address (first octet 0x02) from a hash of
// the VM's name, stable across restarts and re-definitions.
func derivedMAC(vm string, i int) string {
	h := sha256.Sum256([]byte("govisor-mac/" + vm + "/" + strconv.Itoa(i)))
	mac := net.HardwareAddr{0x02, h[0], h[1], h[2], h[3], h[4]}
	return mac.String()
}

// normalizeNICs checks a definition's NICs and fills in their MACs; the
// networks' existence is the agent's check (resolveNICs).
func normalizeNICs(s *api.VMSpec) error {
	if len(s.NICs) > maxNICs {
		return fieldErr("nics", fmt.Sprintf("%d NICs; at most %d", len(s.NICs), maxNICs))
	}
	seen := map[string]int{}
	for i := range s.NICs {
		nic := &s.NICs[i]
		field := fmt.Sprintf("nics[%d]", i)
		if nic.Network == "" {
			return fieldErr(field+".network", "required: the name of a network (govisor net list)")
		}
		if nic.MAC == "" {
			nic.MAC = derivedMAC(s.Name, i)
		}
		mac, err := net.ParseMAC(nic.MAC)
		if err != nil || len(mac) != 6 {
			return fieldErr(field+".mac", fmt.Sprintf("%q: want a MAC address such as 02:00:00:00:00:01", nic.MAC))
		}
		if mac[0]&1 != 0 {
			return fieldErr(field+".mac", fmt.Sprintf("%s is a multicast address; the first octet must be even", mac))
		}
		nic.MAC = mac.String()
		if j, dup := seen[nic.MAC]; dup {
			return fieldErr(field+".mac", fmt.Sprintf("%s is also nics[%d]'s", nic.MAC, j))
		}
		seen[nic.MAC] = i
	}
	return nil
}

// resolveSpec checks what a definition refers to in etcd (networks, pools
// and volumes) and fills in the disk paths of volumes, for a VM of host.
// It runs before normalize.
func resolveSpec(ctx context.Context, st *store.Store, host string, s api.VMSpec) (api.VMSpec, error) {
	s.NICs = append([]api.NICSpec(nil), s.NICs...)
	s.Disks = append([]api.DiskSpec(nil), s.Disks...)
	if len(s.NICs) > 0 {
		nets, err := st.ListNetworks(ctx)
		if err != nil {
			return s, err
		}
		for i, nic := range s.NICs {
			if nic.Network == "" {
				continue // normalize names the missing field
			}
			found := false
			for _, n := range nets {
				found = found || n.Name == nic.Network
			}
			if !found {
				return s, fieldErr(fmt.Sprintf("nics[%d].network", i), fmt.Sprintf("no network %q (define it with govisor net create)", nic.Network))
			}
		}
	}
	if err := resolveDisks(ctx, st, host, &s); err != nil {
		return s, err
	}
	return s, nil
}

// vmsUsing lists the VMs whose definition matches use.
func vmsUsing(recs []store.Record, use func(api.VMSpec) bool) []string {
	var vms []string
	for _, r := range recs {
		if use(r.Desired.Spec) {
			vms = append(vms, r.Desired.Spec.Name)
		}
	}
	return vms
}
