package hostnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Bridge is a Linux bridge as EnsureBridge makes it.
type Bridge struct {
	Name string
	// Addr is the host's address on the bridge (e.g. 169.254.0.1/16); the
	// zero Prefix means none.
	Addr netip.Prefix
	// Alias tags a bridge this call creates (IFLA_IFALIAS), so that its
	// owner can tell it from one a user made; an existing bridge keeps its own.
	Alias string
}

// EnsureBridge creates the bridge b, or checks that the existing device
// of that name is a bridge with b's address, and brings it up. created
// says whether this call made it.
func EnsureBridge(b Bridge) (created bool, err error) {
	l, err := lookup(b.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		la := netlink.NewLinkAttrs()
		la.Name = b.Name
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			return false, fmt.Errorf("hostnet: create bridge %s: %w", b.Name, err)
		}
		created = true
		if l, err = lookup(b.Name); err != nil {
			return true, err
		}
		if b.Alias != "" {
			if err := netlink.LinkSetAlias(l, b.Alias); err != nil {
				netlink.LinkDel(l)
				return false, fmt.Errorf("hostnet: tag bridge %s: %w", b.Name, err)
			}
		}
	case err != nil:
		return false, err
	case l.Type() != "bridge":
		return false, fmt.Errorf("%w: %s is a %s device, not a bridge", ErrConflict, b.Name, l.Type())
	}
	undo := func(e error) (bool, error) {
		if created {
			netlink.LinkDel(l)
		}
		return false, e
	}
	if b.Addr.IsValid() {
		if err := ensureAddr(l, b.Addr); err != nil {
			return undo(err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return undo(fmt.Errorf("hostnet: bring bridge %s up: %w", b.Name, err))
	}
	return created, nil
}

// ensureAddr gives l the address want unless it has it; another address of
// the same family (IPv6 link-local ones aside, which the kernel adds by
// itself) is a conflict: two definitions disagree on what the bridge is.
func ensureAddr(l netlink.Link, want netip.Prefix) error {
	name := l.Attrs().Name
	fam := netlink.FAMILY_V4
	if want.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(l, fam)
	if err != nil {
		return fmt.Errorf("hostnet: addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		if !ok || (p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() && !want.Addr().IsLinkLocalUnicast()) {
			continue
		}
		if p == want {
			return nil
		}
		return fmt.Errorf("%w: %s has address %s, not %s", ErrConflict, name, p, want)
	}
	ipn := &net.IPNet{IP: want.Addr().AsSlice(), Mask: net.CIDRMask(want.Bits(), want.Addr().BitLen())}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("hostnet: add address %s to %s: %w", want, name, err)
	}
	return nil
}

// DeleteBridge removes the bridge name (its ports are released, not
// deleted). A missing bridge is fine; a device that is not a bridge is
// ErrConflict, so that a typo never deletes, say, the uplink.
func DeleteBridge(name string) error {
	l, err := lookup(name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.Type() != "bridge" {
		return fmt.Errorf("%w: %s is a %s device, not a bridge", ErrConflict, name, l.Type())
	}
	return Delete(name)
}
