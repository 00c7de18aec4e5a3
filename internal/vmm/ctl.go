package vmm

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/govisor/govisor/internal/fence"
	"github.com/govisor/govisor/internal/jail"
	"github.com/govisor/govisor/internal/migration"
	"github.com/govisor/govisor/internal/vm"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
	"github.com/govisor/govisor/internal/vmmapi"
)

// machineCtl serves a VMM's control API; it follows the current machine
// across guest reboots.
type machineCtl struct {
	names vmmconfig.Names // how messages name config fields

	mu   sync.Mutex
	m    *vm.Machine
	seen bool // a machine has existed (before: "starting", after: "stopped")
	// bootsAgain says whether a guest's reboot boots it again in this VMM
	// (see VMM.run).
	bootsAgain bool

	mig   migration.Tracker // outgoing migrations
	migTo string            // the latest migration's destination

	fence  *fence.Watchdog // the self-fencing watchdog the API feeds
	leases *fencing        // the disk leases a migration hands over
}

// current is the running machine, or nil.
func (c *machineCtl) current() *vm.Machine {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m
}

func (c *machineCtl) set(m *vm.Machine) {
	c.mu.Lock()
	c.m = m
	c.seen = c.seen || m != nil
	c.mu.Unlock()
}

// startWait is how long a request waits for the machine while the VMM
// builds it (the API socket exists from the VMM's start, and between a
// guest's reboots).
const startWait = 10 * time.Second

// errStarting answers requests that came before the machine exists.
var errStarting = errors.New("the VM is still starting (booting, restoring or waiting for a migration): try again")

// get returns the machine, waiting for it while the VMM builds it.
func (c *machineCtl) get() (*vm.Machine, error) {
	for deadline := time.Now().Add(startWait); ; time.Sleep(5 * time.Millisecond) {
		c.mu.Lock()
		m, seen := c.m, c.seen
		c.mu.Unlock()
		switch {
		case m != nil:
			return m, nil
		case time.Now().After(deadline) && !seen:
			return nil, errStarting
		case time.Now().After(deadline):
			return nil, vm.ErrStopped
		}
	}
}

func (c *machineCtl) Pause() error {
	m, err := c.get()
	if err != nil {
		return err
	}
	return m.Pause()
}

func (c *machineCtl) Resume() error {
	m, err := c.get()
	if err != nil {
		return err
	}
	m.Resume()
	return nil
}

func (c *machineCtl) Snapshot(dir string) error {
	m, err := c.get()
	if err != nil {
		return err
	}
	return m.Snapshot(dir)
}

func (c *machineCtl) Stop() error {
	m, err := c.get()
	if err != nil {
		return err
	}
	m.Stop(vm.Exit{Reason: vm.ExitHost, Detail: "stopped through the API"})
	return nil
}

func (c *machineCtl) Shutdown() error {
	m, err := c.get()
	if err != nil {
		return err
	}
	m.PowerButton()
	return nil
}

func (c *machineCtl) SetBalloon(mib uint64) error {
	m, err := c.get()
	if err != nil {
		return err
	}
	b := m.Balloon()
	if b == nil {
		return fmt.Errorf("this VM has no balloon: it was started without %s", c.names.Name("balloon"))
	}
	if mib >= m.Config().MemoryMiB {
		return fmt.Errorf("balloon of %d MiB: the VM has only %d MiB", mib, m.Config().MemoryMiB)
	}
	b.SetTarget(uint32(mib << 20 / 4096))
	return nil
}

func (c *machineCtl) Info() vmmapi.Info {
	c.mu.Lock()
	m := c.m
	c.mu.Unlock()
	if m == nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.seen {
			return vmmapi.Info{State: "starting", Landlock: landlock()} // booting, restoring or waiting for a migration
		}
		return vmmapi.Info{State: "stopped", Landlock: landlock()}
	}
	cfg := m.Config()
	st := "running"
	if m.Paused() {
		st = "paused"
	}
	info := vmmapi.Info{State: st, CPUs: cfg.CPUs, MemoryMiB: cfg.MemoryMiB, KVM: string(m.Flavor()),
		Template: m.Template(), Exits: m.Exits(), Emulated: m.EmulatedInstructions(), Landlock: landlock()}
	if b := m.Balloon(); b != nil {
		s := b.Stats()
		info.Balloon = &vmmapi.Balloon{TargetMiB: uint64(b.Target()) * 4096 >> 20, ActualMiB: uint64(b.Actual()) * 4096 >> 20,
			GuestFreeMiB: s.FreeMemory >> 20, GuestAvailMiB: s.AvailableMemory >> 20}
	}
	return info
}

// Fence feeds the VMM's self-fencing watchdog (vmmapi.Fencer).
func (c *machineCtl) Fence(ttl time.Duration) error { return c.fence.Feed(ttl) }

// FenceUntil feeds the watchdog up to a CLOCK_MONOTONIC deadline.
func (c *machineCtl) FenceUntil(deadline int64) error { return c.fence.FeedUntil(deadline) }

// FenceStatus reports the watchdog (vmmapi.Fencer).
func (c *machineCtl) FenceStatus() vmmapi.FenceStatus {
	armed, remaining, fired, reason := c.fence.Status()
	return vmmapi.FenceStatus{Armed: armed, RemainingMS: remaining.Milliseconds(), Fired: fired, Reason: reason}
}

// landlock is what the jail said of its Landlock rules (jail.LandlockEnv).
func landlock() string { return os.Getenv(jail.LandlockEnv) }
