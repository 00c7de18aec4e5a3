package hostnet

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TAP is a persistent TAP device as EnsureTAP makes it: IFF_TAP |
// IFF_NO_PI | IFF_VNET_HDR, single queue, which is what the VMM's
// virtio-net backend attaches to (internal/virtio/netdev).
type TAP struct {
	Name string
	// Bridge, if set, is the bridge the TAP is enslaved to.
	Bridge string
	// Owner and Group may attach to the TAP without CAP_NET_ADMIN (the
	// VMM's user when it runs unprivileged); -1: no restriction.
	Owner, Group int
	// Alias tags a TAP this call creates (IFLA_IFALIAS).
	Alias string
}

// EnsureTAP creates the TAP t, or checks that the existing device of that
// name is a persistent single-queue TAP owned as t says, enslaves it to
// t.Bridge and brings it up. created says whether this call made it.
func EnsureTAP(t TAP) (created bool, err error) {
	l, err := lookup(t.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		if err := createTAP(t); err != nil {
			return false, err
		}
		created = true
		if l, err = lookup(t.Name); err != nil {
			return true, err
		}
		if t.Alias != "" {
			if err := netlink.LinkSetAlias(l, t.Alias); err != nil {
				netlink.LinkDel(l)
				return false, fmt.Errorf("hostnet: tag TAP %s: %w", t.Name, err)
			}
		}
	case err != nil:
		return false, err
	default:
		if err := checkTAP(l, t); err != nil {
			return false, err
		}
	}
	undo := func(e error) (bool, error) {
		if created {
			netlink.LinkDel(l)
		}
		return false, e
	}
	if t.Bridge != "" {
		if err := enslave(l, t.Bridge); err != nil {
			return undo(err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return undo(fmt.Errorf("hostnet: bring TAP %s up: %w", t.Name, err))
	}
	return created, nil
}

// createTAP makes a persistent TAP with the TUN/TAP ioctls
// (Documentation/networking/tuntap.rst): TUNSETIFF creates it, TUNSETOWNER
// and TUNSETGROUP say who may attach later, TUNSETPERSIST keeps it after
// this descriptor closes.
func createTAP(t TAP) error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("hostnet: create TAP %s: open /dev/net/tun: %w", t.Name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(t.Name)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrName, t.Name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("hostnet: create TAP %s: TUNSETIFF: %w", t.Name, err)
	}
	fail := func(what string, err error) error {
		unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 0)
		return fmt.Errorf("hostnet: create TAP %s: %s: %w", t.Name, what, err)
	}
	if t.Owner >= 0 {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOWNER, t.Owner); err != nil {
			return fail("TUNSETOWNER", err)
		}
	}
	if t.Group >= 0 {
		if err := unix.IoctlSetInt(fd, unix.TUNSETGROUP, t.Group); err != nil {
			return fail("TUNSETGROUP", err)
		}
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		return fail("TUNSETPERSIST", err)
	}
	return nil
}

// checkTAP compares an existing device with what t asks for.
func checkTAP(l netlink.Link, t TAP) error {
	d, err := describe(l)
	if err != nil {
		return err
	}
	ti := d.TAP
	switch {
	case ti == nil || !ti.TAP:
		return fmt.Errorf("%w: %s is a %s device, not a TAP", ErrConflict, t.Name, d.Kind)
	case !ti.Persistent:
		return fmt.Errorf("%w: %s is a TAP that another process holds open (not persistent)", ErrConflict, t.Name)
	case ti.MultiQueue:
		return fmt.Errorf("%w: %s is a multi-queue TAP; want single-queue", ErrConflict, t.Name)
	case !ti.NoPI:
		return fmt.Errorf("%w: %s carries packet information headers (no IFF_NO_PI)", ErrConflict, t.Name)
	// Netlink reports a missing owner as 0, so 0 matches "none" and root.
	case !sameID(ti.Owner, t.Owner):
		return fmt.Errorf("%w: %s is owned by uid %d, not %d", ErrConflict, t.Name, ti.Owner, t.Owner)
	case !sameID(ti.Group, t.Group):
		return fmt.Errorf("%w: %s belongs to gid %d, not %d", ErrConflict, t.Name, ti.Group, t.Group)
	case t.Bridge != "" && d.Master != "" && d.Master != t.Bridge:
		return fmt.Errorf("%w: %s is a port of bridge %s, not %s", ErrConflict, t.Name, d.Master, t.Bridge)
	}
	return nil
}

func sameID(got, want int) bool {
	norm := func(v int) int {
		if v < 0 {
			return 0
		}
		return v
	}
	return norm(got) == norm(want)
}

// enslave makes l a port of bridge (a no-op when it already is).
func enslave(l netlink.Link, bridge string) error {
	br, err := lookup(bridge)
	if err != nil {
		return fmt.Errorf("hostnet: attach %s to bridge: %w", l.Attrs().Name, err)
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("%w: %s is a %s device, not a bridge", ErrConflict, bridge, br.Type())
	}
	if l.Attrs().MasterIndex == br.Attrs().Index {
		return nil
	}
	if err := netlink.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("hostnet: attach %s to bridge %s: %w", l.Attrs().Name, bridge, err)
	}
	return nil
}

// DeleteTAP removes the TAP name. A missing one is fine; a device that is
// not a TAP is ErrConflict.
func DeleteTAP(name string) error {
	l, err := lookup(name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.Type() != "tuntap" {
		return fmt.Errorf("%w: %s is a %s device, not a TAP", ErrConflict, name, l.Type())
	}
	return Delete(name)
}
