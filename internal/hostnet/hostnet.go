// Package hostnet manages the host side of guest networking: Linux bridges
// and persistent TAP devices enslaved to them, through rtnetlink and the
// TUN/TAP ioctls. Every call is idempotent: ensuring a device that already
// exists with the same settings succeeds, one that exists with other
// settings fails with ErrConflict naming the difference. All calls act in
// the network namespace of the calling thread's process (the agent's).
package hostnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
)

// Errors callers match with errors.Is.
var (
	ErrConflict = errors.New("hostnet: device exists with other settings")
	ErrNotFound = errors.New("hostnet: no such network device")
	ErrName     = errors.New("hostnet: invalid network device name")
)

// maxNameLen is IFNAMSIZ-1: the kernel's limit on interface names.
const maxNameLen = 15

// ValidName checks an interface name the way the kernel's dev_valid_name
// does, so that a bad name fails with a clear message before any syscall.
func ValidName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: %q", ErrName, name)
	case len(name) > maxNameLen:
		return fmt.Errorf("%w: %q is longer than %d characters", ErrName, name, maxNameLen)
	case strings.ContainsAny(name, "/:% \t\n\x00"):
		return fmt.Errorf("%w: %q contains /, :, %% or white space", ErrName, name)
	}
	return nil
}

// Link is what the host says about one network device.
type Link struct {
	Name   string
	Kind   string // "bridge", "tuntap", "veth", ...
	Alias  string // IFLA_IFALIAS: govisor tags the devices it owns
	Master string // the bridge it is enslaved to, if any
	Up     bool   // administratively up
	MAC    net.HardwareAddr
	Addrs  []netip.Prefix // IPv4 and IPv6 addresses
	TAP    *TAPInfo       // for TUN/TAP devices
}

// TAPInfo is the TUN/TAP part of a Link.
type TAPInfo struct {
	TAP        bool // a TAP (ethernet frames), not a TUN
	VnetHdr    bool
	NoPI       bool
	MultiQueue bool
	Persistent bool
	Owner      int // -1: none
	Group      int // -1: none
}

// Get describes the device name; ErrNotFound when there is none.
func Get(name string) (Link, error) {
	if err := ValidName(name); err != nil {
		return Link{}, err
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return Link{}, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return Link{}, fmt.Errorf("hostnet: look up %s: %w", name, err)
	}
	return describe(l)
}

// Links lists the devices whose alias starts with aliasPrefix (every
// device for an empty prefix).
func Links(aliasPrefix string) ([]Link, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("hostnet: list devices: %w", err)
	}
	var out []Link
	for _, l := range ls {
		if !strings.HasPrefix(l.Attrs().Alias, aliasPrefix) {
			continue
		}
		d, err := describe(l)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue // deleted while we looked
			}
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func describe(l netlink.Link) (Link, error) {
	at := l.Attrs()
	d := Link{Name: at.Name, Kind: l.Type(), Alias: at.Alias, Up: at.Flags&net.FlagUp != 0, MAC: at.HardwareAddr}
	if at.MasterIndex > 0 {
		m, err := netlink.LinkByIndex(at.MasterIndex)
		if err == nil {
			d.Master = m.Attrs().Name
		}
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return Link{}, fmt.Errorf("%w: %s", ErrNotFound, at.Name)
		}
		return Link{}, fmt.Errorf("hostnet: addresses of %s: %w", at.Name, err)
	}
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok {
			d.Addrs = append(d.Addrs, p)
		}
	}
	if t, ok := l.(*netlink.Tuntap); ok {
		d.TAP = &TAPInfo{
			TAP: t.Mode == netlink.TUNTAP_MODE_TAP, VnetHdr: t.Flags&netlink.TUNTAP_VNET_HDR != 0,
			NoPI: t.Flags&netlink.TUNTAP_NO_PI != 0, MultiQueue: t.Flags&netlink.TUNTAP_MULTI_QUEUE != 0,
			Persistent: !t.NonPersist, Owner: idOrNone(t.Owner), Group: idOrNone(t.Group),
		}
	}
	return d, nil
}

// idOrNone maps the kernel's "no owner" (absent attribute, read as 0, or
// (uid_t)-1) to -1. Owner root is reported as 0 and cannot be told apart
// from "none" through netlink; callers compare with that in mind.
func idOrNone(v uint32) int {
	if v == ^uint32(0) {
		return -1
	}
	return int(v)
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), true
}

// SetUp brings the device name up (or down).
func SetUp(name string, up bool) error {
	l, err := lookup(name)
	if err != nil {
		return err
	}
	if up {
		err = netlink.LinkSetUp(l)
	} else {
		err = netlink.LinkSetDown(l)
	}
	if err != nil {
		return fmt.Errorf("hostnet: set %s up=%v: %w", name, up, err)
	}
	return nil
}

// Delete removes the device name; a device that does not exist is not an
// error (deleting is idempotent).
func Delete(name string) error {
	l, err := lookup(name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := netlink.LinkDel(l); err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("hostnet: delete %s: %w", name, err)
	}
	return nil
}

func lookup(name string) (netlink.Link, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return nil, fmt.Errorf("hostnet: look up %s: %w", name, err)
	}
	return l, nil
}
