// Package vm builds and runs one x86-64 virtual machine on KVM: guest RAM,
// vCPU threads, the in-kernel irqchip and PIT, legacy devices and firmware
// tables, and the kernel it boots.
package vm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/internal/devmgr"
	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/firmware/fwcfg"
	"github.com/govisor/govisor/internal/firmware/pflash"
	"github.com/govisor/govisor/internal/guestmem"
	"github.com/govisor/govisor/internal/hostmem"
	"github.com/govisor/govisor/internal/iobus"
	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/legacy/acpipm"
	"github.com/govisor/govisor/internal/legacy/cmosrtc"
	"github.com/govisor/govisor/internal/legacy/i8042"
	"github.com/govisor/govisor/internal/legacy/uart8250"
	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/virtio/balloon"
	"github.com/govisor/govisor/internal/vmlimits"
)

// Limits of what govisor accepts (vmlimits', which the agent shares).
const (
	MinMemoryMiB = vmlimits.MinMemoryMiB
	MaxCPUs      = vmlimits.MaxCPUs
)

// Guest-physical layout: RAM below the 32-bit PCI hole, the rest above 4 GiB.
const (
	pciHoleStart = 0xC0000000
	highMemStart = 1 << 32
	tssAddr      = 0xFFFBD000 // three pages Intel VMX needs for real mode, in the hole
	identityMap  = 0xFFFBC000
)

// BootMode selects how the kernel is entered.
type BootMode string

// Boot modes.
const (
	BootLinux64 BootMode = "linux64" // Linux 64-bit boot protocol (boot_params in RSI)
	BootPVH     BootMode = "pvh"     // PVH: 32-bit protected mode, hvm_start_info in EBX
)

// Config describes the machine to build.
type Config struct {
	CPUs            int
	MemoryMiB       uint64
	Kernel          []byte // bzImage or ELF
	Initrd          []byte
	Cmdline         string
	Boot            BootMode
	GuestDecompress bool      // let the guest decompress a bzImage itself
	Flat            *Flat     // instead of Kernel: raw 64-bit code (test guests)
	Console         io.Writer // the serial console's output
	DebugExit       bool      // QEMU-compatible isa-debug-exit port at 0xF4
	Template        string    // CPU template: "auto" (default), "host" or "pvm"
	// CPUFeatures, if set, are the only CPU features (as /proc/cpuinfo
	// flags, cpuid.Features) the guest sees: a cluster's CPU baseline. A
	// restored machine must get every one of them from this host's KVM.
	CPUFeatures []string
	Disks       []Disk // virtio-blk disks, in PCI slot order
	RNG         bool   // a virtio-rng device
	Nets        []Net  // virtio-net interfaces on TAP devices
	Vsock       *Vsock // a virtio-vsock device
	Balloon     bool   // a virtio-balloon device (with statistics)
	// Firmware is a BIOS image (SeaBIOS's bios-256k.bin) to boot through
	// instead of a kernel: it loads the first disk's boot loader. With
	// FirmwareVars it is OVMF's code (OVMF_CODE_4M.fd).
	Firmware    []byte
	FirmwareLog io.Writer // the firmware's debug log (port 0x402); nil: off
	// UUID is the machine's, which firmware reports (SMBIOS, FW_CFG_UUID),
	// in RFC 4122 byte order; zero: none.
	UUID [16]byte
	// FirmwareVars makes the boot UEFI: OVMF's variable store, a file
	// opened read-write (a copy of OVMF_VARS_4M.fd made for the VM), which
	// the guest sees as flash below the code and whose writes land in the
	// file (uefi.go). The caller keeps it open while the machine lives.
	FirmwareVars *os.File
}

// Flat is a raw code image that every vCPU enters in 64-bit mode with
// RDI = its vCPU index, as a test guest wants (like QEMU's -device loader).
type Flat struct {
	Code []byte
	Addr uint64
}

// ExitReason says why a machine stopped.
type ExitReason int

// Exit reasons.
const (
	ExitNone     ExitReason = iota
	ExitPowerOff            // the guest powered off (ACPI S5)
	ExitReset               // the guest rebooted (i8042, 0xCF9, triple fault)
	ExitHalt                // a vCPU executed HLT with no irqchip to wake it
	ExitDebug               // the guest wrote the debug-exit port
	ExitHost                // the host stopped it
	ExitError               // KVM or the VMM failed
)

func (r ExitReason) String() string {
	return [...]string{"none", "poweroff", "reset", "halt", "debug-exit", "host-stop", "error", "migrated"}[r]
}

// Exit is the outcome of running a machine.
type Exit struct {
	Reason ExitReason
	Code   int // ExitDebug: the value written
	Detail string
	Err    error
}

// ErrStopped is returned when operating on a machine that has stopped.
var ErrStopped = errors.New("vm: machine has stopped")

// Machine is a built VM, ready to run.
type Machine struct {
	// postCopyOn: post-copy has not (or, having failed, never) brought all
	// of the memory over; snapshots and migrations are refused.
	postCopyOn atomic.Bool

	cfg       Config
	sys       *kvm.System
	kvm       *kvm.VM
	mem       *guestmem.Memory
	pio       iobus.Bus
	mmio      iobus.Bus
	uart      *uart8250.UART
	kbd       *i8042.Controller
	rtc       *cmosrtc.RTC
	pm        *acpipm.PM
	pci       *pci.Bus
	runners   []*vcpuRunner
	flavor    kvm.Flavor
	tmpl      string
	cpuFeats  []string // the guest's CPU features (cpuid.Present)
	bootLog   string
	notifiers map[uint64]notifier
	devs      *devmgr.Manager   // the virtio-pci functions (virtio.go, hotplug.go)
	images    []diskimage.Image // the boot disks'
	diskDirty []*dirtyBlocks    // per image, for disk mirroring
	balloon   *balloon.Device
	msrIndex  []uint32
	slotFlags uint32
	fwcfg     *fwcfg.Device // firmware boot only (firmware.go)
	rom       []byte        // the firmware image's read-only mapping
	vars      []byte        // UEFI: the variable file's shared mapping (uefi.go)
	varsFlash *pflash.Flash // UEFI: the variable bank
	hp        *hotplug      // PCI hotplug of disks (hotplug.go)
	sci       *sciLine      // the shared ACPI SCI (hotplug_sci.go)
	sciOnce   sync.Once

	exits       []atomic.Uint64
	exitReasons []exitCounts // per vCPU
	firstExit   atomic.Int64 // unix ns of the first exit to user space
	emulated    atomic.Uint64

	mu       sync.Mutex
	cond     *sync.Cond
	pauseReq bool
	parked   int
	running  int
	stopping bool
	exit     Exit
	started  bool
	done     chan struct{}
	// closed: Close has begun; migrations are refused. memReaders counts
	// the migrations reading guest memory, which Close waits out before
	// it unmaps it.
	closed     bool
	memReaders sync.WaitGroup
}

// New builds the machine: KVM VM, memory, devices, tables, kernel and vCPUs.
func New(cfg Config) (*Machine, error) { return build(cfg, false, nil) }

// Restore builds a machine from a saved state and guest RAM (for example
// mapped MAP_PRIVATE from a snapshot); it starts paused-equivalent: call Start.
// cfg must describe the same machine (CPUs, memory, devices) as the one saved.
// Restore owns mem from then on: on failure it is unmapped.
func Restore(cfg Config, st *MachineState, mem *guestmem.Memory) (_ *Machine, err error) {
	defer func() {
		if err != nil && mem != nil && mem.Regions() != nil {
			mem.Close()
		}
	}()
	if st == nil || !readableStateVersion(st.Version) {
		v := -1
		if st != nil {
			v = st.Version
		}
		return nil, fmt.Errorf("vm: machine state version %d, this govisor restores version %d", v, StateVersion)
	}
	if len(st.VCPUs) != cfg.CPUs {
		return nil, fmt.Errorf("vm: state has %d vCPUs, config %d", len(st.VCPUs), cfg.CPUs)
	}
	if mem == nil || mem.Size() != cfg.MemoryMiB<<20 {
		return nil, fmt.Errorf("vm: restored memory does not match memory %dM", cfg.MemoryMiB)
	}
	m, err := build(cfg, true, mem)
	if err != nil {
		return nil, err
	}
	if err := m.restoreState(st); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// build makes the machine. With restoring set it stops short of loading a
// guest: the vCPUs are created but get their state from restoreState.
func build(cfg Config, restoring bool, mem *guestmem.Memory) (_ *Machine, err error) {
	if cfg.CPUs < 1 || cfg.CPUs > MaxCPUs {
		return nil, fmt.Errorf("vm: cpus %d: give 1 to %d", cfg.CPUs, MaxCPUs)
	}
	if cfg.MemoryMiB < MinMemoryMiB {
		return nil, fmt.Errorf("vm: memory %dM: the minimum is %dM", cfg.MemoryMiB, MinMemoryMiB)
	}
	if avail := hostmem.TotalMiB(); avail > 0 && cfg.MemoryMiB > avail {
		return nil, fmt.Errorf("vm: memory %dM is more than this host's %dM of RAM: give less memory", cfg.MemoryMiB, avail)
	}
	if err := checkFirmware(cfg); err != nil {
		return nil, err
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	if cfg.Boot == "" {
		cfg.Boot = BootLinux64
	}
	sys, err := kvm.Open()
	if err != nil {
		return nil, err
	}
	m := &Machine{cfg: cfg, sys: sys, done: make(chan struct{}), flavor: kvm.DetectFlavor()}
	m.cond = sync.NewCond(&m.mu)
	m.exits = make([]atomic.Uint64, cfg.CPUs)
	m.exitReasons = make([]exitCounts, cfg.CPUs)
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if err := sys.Require(map[string]int{
		"KVM_CAP_IRQCHIP": kvm.CapIRQChip, "KVM_CAP_PIT2": kvm.CapPIT2, "KVM_CAP_USER_MEMORY": kvm.CapUserMemory,
		"KVM_CAP_IOEVENTFD": kvm.CapIOEventFD, "KVM_CAP_IRQFD": kvm.CapIRQFD, "KVM_CAP_VCPU_EVENTS": kvm.CapVCPUEvents,
		"KVM_CAP_IMMEDIATE_EXIT": kvm.CapImmediateExit,
	}); err != nil {
		return nil, err
	}
	if max := sys.CheckExtension(kvm.CapMaxVCPUs); max > 0 && cfg.CPUs > max {
		return nil, fmt.Errorf("vm: cpus %d: this host's KVM allows at most %d", cfg.CPUs, max)
	}
	if m.kvm, err = sys.CreateVM(); err != nil {
		return nil, err
	}
	tss, identity := realModePages(cfg)
	if err := m.kvm.SetTSSAddr(tss); err != nil {
		return nil, err
	}
	if err := m.kvm.SetIdentityMapAddr(identity); err != nil {
		return nil, err
	}
	// The in-kernel interrupt controllers and PIT are made while memory,
	// devices and tables are set up: creating the PIT starts a kernel thread,
	// which on a loaded host takes milliseconds. vCPUs need the irqchip, so
	// they wait for it.
	irqchipDone := make(chan error, 1)
	go func() {
		if err := m.kvm.CreateIRQChip(); err != nil {
			irqchipDone <- err
			return
		}
		if err := m.kvm.SetGSIRouting(kvm.PCRouting()); err != nil {
			irqchipDone <- err
			return
		}
		irqchipDone <- m.kvm.CreatePIT2(kvm.PITSpeakerDummy)
	}()
	waitIRQChip := func() error {
		if irqchipDone == nil {
			return nil
		}
		err := <-irqchipDone
		irqchipDone = nil
		return err
	}
	defer waitIRQChip() // never leave the goroutine using a closed VM
	if err := m.setupMemory(mem, !restoring && len(cfg.Firmware) == 0); err != nil {
		return nil, err
	}
	if err := m.mapFirmware(); err != nil {
		return nil, err
	}
	if err := m.mapVars(); err != nil {
		return nil, err
	}
	if err := m.setupDevices(); err != nil {
		return nil, err
	}
	if err := m.setupVirtio(); err != nil {
		return nil, err
	}
	if err := m.setupHotplug(); err != nil {
		return nil, err
	}
	if err := m.setupFirmware(); err != nil {
		return nil, err
	}
	if restoring {
		if err := waitIRQChip(); err != nil {
			return nil, err
		}
		if err := m.createVCPUs(entryState{}, false); err != nil {
			return nil, err
		}
		return m, nil
	}
	entry, err := m.loadGuest()
	if err != nil {
		return nil, err
	}
	if err := waitIRQChip(); err != nil {
		return nil, err
	}
	if err := m.createVCPUs(entry, true); err != nil {
		return nil, err
	}
	return m, nil
}

// setupMemory maps guest RAM (restored, or new) into KVM; bootTables writes
// the GDT and page tables a fresh boot needs (a restore or an incoming
// migration must start from memory that is all zero or all saved).
func (m *Machine) setupMemory(restored *guestmem.Memory, bootTables bool) error {
	if restored != nil {
		m.mem = restored
		return m.mapSlots()
	}
	mem, err := guestmem.New(ramLayout(m.cfg.MemoryMiB))
	if err != nil {
		return err
	}
	m.mem = mem
	if err := m.mapSlots(); err != nil {
		return err
	}
	if !bootTables {
		return nil
	}
	return writeBootTables(mem)
}

// ramLayout places memMiB of RAM below the 32-bit PCI hole and the rest above 4 GiB.
func ramLayout(memMiB uint64) []guestmem.Range {
	total := memMiB << 20
	low := total
	if low > pciHoleStart {
		low = pciHoleStart
	}
	ranges := []guestmem.Range{{GPA: 0, Size: low}}
	if total > low {
		ranges = append(ranges, guestmem.Range{GPA: highMemStart, Size: total - low})
	}
	return ranges
}

func (m *Machine) mapSlots() error {
	for i, r := range m.mem.Regions() {
		if err := m.kvm.SetUserMemoryRegion(uint32(i), m.slotFlags, r.GPA, r.Host); err != nil {
			return err
		}
	}
	return nil
}

// PowerButton presses the ACPI power button: a guest with ACPI shuts down
// cleanly (and then powers off); one without ignores it.
func (m *Machine) PowerButton() { m.pm.PowerButton() }

// Paused reports whether a pause is in force.
func (m *Machine) Paused() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pauseReq
}

// Config returns the configuration the machine was built from.
func (m *Machine) Config() Config { return m.cfg }

// Memory returns the guest RAM.
func (m *Machine) Memory() *guestmem.Memory { return m.mem }

// Console returns the serial console UART (for host input).
func (m *Machine) Console() *uart8250.UART { return m.uart }

// Flavor reports which kind of KVM runs the machine.
func (m *Machine) Flavor() kvm.Flavor { return m.flavor }

// Template is the CPU template applied.
func (m *Machine) Template() string { return m.tmpl }

// CPUFeatures are the CPU features the guest sees (cpuid.Features names,
// sorted): what any host the guest moves to must offer.
func (m *Machine) CPUFeatures() []string { return m.cpuFeats }

// BootInfo describes how the guest was loaded (for logs).
func (m *Machine) BootInfo() string { return m.bootLog }

// Exits returns the number of KVM exits each vCPU has taken to user space.
func (m *Machine) Exits() []uint64 {
	out := make([]uint64, len(m.exits))
	for i := range m.exits {
		out[i] = m.exits[i].Load()
	}
	return out
}

// FirstExit is when a vCPU first exited to user space (for a test guest:
// its first I/O instruction), or the zero time.
func (m *Machine) FirstExit() time.Time {
	if ns := m.firstExit.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// EmulatedInstructions counts instructions govisor completed after a KVM
// emulation failure (kvm_pvm only).
func (m *Machine) EmulatedInstructions() uint64 { return m.emulated.Load() }

// Start runs every vCPU on its own OS thread.
func (m *Machine) Start() error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("vm: machine already started")
	}
	m.started = true
	m.running = len(m.runners)
	m.mu.Unlock()
	installKickHandler()
	for _, r := range m.runners {
		go r.loop(nil)
	}
	go func() {
		m.mu.Lock()
		for m.running > 0 {
			m.cond.Wait()
		}
		m.mu.Unlock()
		close(m.done)
	}()
	return nil
}

// Wait blocks until every vCPU has stopped and returns why the machine stopped.
func (m *Machine) Wait() Exit {
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exit
}

// Done is closed when the machine has stopped.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Run starts the machine and waits for it to stop.
func (m *Machine) Run() Exit {
	if err := m.Start(); err != nil {
		return Exit{Reason: ExitError, Err: err}
	}
	return m.Wait()
}

// Close releases the vCPUs, the VM and guest memory. A machine still
// running is stopped first: its vCPU threads must be out of KVM_RUN
// before their kvm_run pages are unmapped.
func (m *Machine) Close() {
	m.mu.Lock()
	started := m.started
	m.closed = true
	m.mu.Unlock()
	if started {
		m.Stop(Exit{Reason: ExitHost, Detail: "closed while running"})
		m.Wait()
	}
	// A migration still reading memory (the guest stopped under it, say
	// by rebooting, which closes this machine for a new one) sees the
	// stop and returns; the memory must outlive it.
	m.memReaders.Wait()
	m.closeHotplug()
	m.closeDevices()
	if m.rtc != nil {
		m.rtc.Close() // its timer raises IRQ 8 through m.kvm
	}
	for _, r := range m.runners {
		r.c.Close()
	}
	m.runners = nil
	if m.kvm != nil {
		m.kvm.Close()
		m.kvm = nil
	}
	if m.rom != nil {
		_ = unix.Munmap(m.rom)
		m.rom = nil
	}
	m.closeVars()
	if m.mem != nil {
		m.mem.Close()
		m.mem = nil
	}
	if m.sys != nil {
		m.sys.Close()
		m.sys = nil
	}
}
