package netdev

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrTUN reports that /dev/net/tun cannot be used.
var ErrTUN = errors.New("netdev: TAP device unavailable")

// TAP is a Linux TAP interface opened with a virtio_net_hdr_v1 on every
// frame; it implements Backend.
type TAP struct {
	*packetFile
	name     string
	attached bool // in the kernel's queue rotation
}

// OpenTAP attaches to the TAP interface name, creating it if it does not
// exist (an empty name lets the kernel pick tapN). A created interface
// lives as long as the TAP is open; its addresses and bridge membership
// are the caller's business.
func OpenTAP(name string) (*TAP, error) {
	return openTAP(name, 0)
}

// OpenTAPQueues opens n queues of the multiqueue TAP interface name
// (IFF_MULTI_QUEUE), creating it if needed, for NewMultiqueue; n = 1
// is OpenTAP.
func OpenTAPQueues(name string, n int) ([]*TAP, error) {
	if n < 1 || n > MaxPairs {
		return nil, fmt.Errorf("%w: %d queues (1 to %d)", ErrTUN, n, MaxPairs)
	}
	if n == 1 {
		t, err := OpenTAP(name)
		if err != nil {
			return nil, err
		}
		return []*TAP{t}, nil
	}
	var taps []*TAP
	for range n {
		t, err := openTAP(name, unix.IFF_MULTI_QUEUE)
		if err != nil {
			for _, t := range taps {
				t.Close()
			}
			return nil, err
		}
		// A kernel-chosen name must be the same for every queue.
		name = t.name
		taps = append(taps, t)
	}
	return taps, nil
}

func openTAP(name string, extra uint16) (*TAP, error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("%w: interface name %q longer than %d bytes", ErrTUN, name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: open /dev/net/tun: %w (needs CAP_NET_ADMIN or an existing TAP owned by this user)", ErrTUN, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: %q: %w", ErrTUN, name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR | extra)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: TUNSETIFF %q: %w", ErrTUN, name, err)
	}
	// virtio_net_hdr_v1 with num_buffers (12 bytes) is the header every
	// modern driver uses, with or without mergeable buffers (5.1.6).
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, HeaderSize); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: TUNSETVNETHDRSZ on %s: %w", ErrTUN, ifr.Name(), err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: TUNSETOFFLOAD on %s: %w", ErrTUN, ifr.Name(), err)
	}
	n := ifr.Name()
	p, err := newPacketFile(fd, "tap "+n)
	if err != nil {
		return nil, err
	}
	return &TAP{packetFile: p, name: n, attached: true}, nil
}

// Name is the interface name.
func (t *TAP) Name() string { return t.name }

// SetOffload implements Backend with TUNSETOFFLOAD.
func (t *TAP) SetOffload(flags int) error {
	var serr error
	err := t.rc.Control(func(fd uintptr) {
		serr = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, flags)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("netdev: TUNSETOFFLOAD %#x on %s: %w", flags, t.name, err)
	}
	return nil
}

// SetQueueEnabled implements QueueEnabler with TUNSETQUEUE: a detached
// queue of a multiqueue TAP gets no frames from the kernel.
func (t *TAP) SetQueueEnabled(on bool) error {
	flag := uint16(unix.IFF_DETACH_QUEUE)
	if on {
		flag = unix.IFF_ATTACH_QUEUE
	}
	ifr, err := unix.NewIfreq(t.name)
	if err != nil {
		return fmt.Errorf("netdev: %s: %w", t.name, err)
	}
	ifr.SetUint16(flag)
	var serr error
	err = t.rc.Control(func(fd uintptr) {
		serr = unix.IoctlIfreq(int(fd), unix.TUNSETQUEUE, ifr)
	})
	if err == nil {
		err = serr
	}
	if err != nil && !(errors.Is(err, unix.EINVAL) && on == t.attached) {
		return fmt.Errorf("netdev: TUNSETQUEUE %#x on %s: %w", flag, t.name, err)
	}
	t.attached = on
	return nil
}
