package vm

import (
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/internal/firmware/fwcfg"
	"github.com/govisor/govisor/internal/firmware/qemufw"
	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/legacy/uart8250"
	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/x86/acpi"
)

// Firmware boot: a BIOS image (SeaBIOS) mapped read-only below 4 GiB, its
// last 256 KiB also in RAM at 0xC0000-0xFFFFF, and QEMU's fw_cfg device
// telling it about the machine. The boot processor starts at the reset
// vector (CS base 0xFFFF0000, IP 0xFFF0: Intel SDM vol. 3, 9.1.4 "First
// Instruction Executed"), which is the state KVM gives a new vCPU.
const (
	// lowBIOSSize is how much of the image's end is copied below 1 MiB
	// (0xC0000-0xFFFFF, SeaBIOS's BUILD_ROM_START up; see loadFirmware).
	lowBIOSSize = 256 << 10
	// maxFirmwareSize keeps the image clear of the TSS and identity-map
	// pages below it (tssAddr, identityMap).
	maxFirmwareSize = 1<<32 - identityMap - 0x4000
	// romSlot is the KVM memory slot of the read-only image, past the RAM slots.
	romSlot = 32
	// firmwareDebugPort is QEMU's debugcon port, where SeaBIOS built for
	// QEMU writes its log; it enables that only if the port reads back 0xE9.
	firmwareDebugPort = 0x402
	debugconReadback  = 0xE9
	// qemuSubsystemVendor and qemuSubsystem are the subsystem IDs of
	// QEMU's PCI functions; SeaBIOS treats the platform as QEMU (and reads
	// fw_cfg) only when the host bridge carries them (src/fw/paravirt.c
	// qemu_detect).
	qemuSubsystemVendor = 0x1AF4
	qemuSubsystem       = 0x1100
)

// checkFirmware refuses firmware configurations govisor cannot boot yet.
func checkFirmware(cfg Config) error {
	n := len(cfg.Firmware)
	if cfg.FirmwareVars != nil {
		if err := checkUEFI(cfg); err != nil {
			return err
		}
	} else if n == 0 {
		return nil
	} else if n%4096 != 0 || n > maxFirmwareSize {
		return fmt.Errorf("vm: firmware image of %d bytes: want a multiple of 4 KiB up to %d bytes (SeaBIOS's bios-256k.bin is 262144)", n, maxFirmwareSize)
	}
	if cfg.Flat != nil || len(cfg.Kernel) > 0 {
		return fmt.Errorf("vm: firmware boot loads the disk's own boot loader: give no kernel")
	}
	// With RAM above 4 GiB SeaBIOS puts 64-bit BARs above it, which its
	// 32-bit virtio driver reaches through the transport's
	// VIRTIO_PCI_CAP_PCI_CFG window (virtio 1.2 4.1.4.9), and OVMF puts
	// them in the aperture ovmfAperture gives it; the DSDT describes a
	// window holding both (pci64Window).
	return nil
}

// pci64Window returns the 64-bit PCI memory window the DSDT describes for
// a firmware-booted guest with memMiB of RAM whose CPUs have physBits of
// physical address (CPUID 0x80000008 EAX[7:0]), or size 0 for none.
//
// SeaBIOS (1.16, pciinit.c) moves 64-bit BARs above 4 GiB once the guest
// has RAM there: at or above RAM's end, rounded up to 1 GiB, or, with its
// CPU's address width known, into the top eighth of the address space
// below 2^min(physBits, 46). Linux claims a BAR only inside a window of
// its host bridge's _CRS (ACPI 6.5 6.4.3.5.1 QWord Address Space
// Descriptor), so the window spans from RAM's end to the top of the
// guest's physical address space and covers each of those placements.
func pci64Window(memMiB uint64, physBits uint8) (start, size uint64) {
	total := memMiB << 20
	if total <= pciHoleStart || physBits < 33 || physBits > 52 {
		return 0, 0
	}
	start = highMemStart + total - pciHoleStart
	start = (start + 1<<30 - 1) &^ (1<<30 - 1)
	top := uint64(1) << physBits
	if start >= top {
		return 0, 0
	}
	return start, top - start
}

// guestPhysBits returns the physical address width the guest's CPUs
// report: KVM's, which the CPUID the vCPUs get passes through (boot.go).
func (m *Machine) guestPhysBits() (uint8, error) {
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return 0, fmt.Errorf("vm: CPUID for the 64-bit PCI window: %w", err)
	}
	for _, e := range supported {
		if e.Function == 0x80000008 {
			return uint8(e.EAX), nil
		}
	}
	return 36, nil // the width x86-64 CPUs without the leaf have (Intel SDM vol. 3A 4.1.4)
}

// mapFirmware maps the image read-only at the top of the 32-bit address
// space; guest writes there exit as MMIO and are dropped.
func (m *Machine) mapFirmware() error {
	img := m.cfg.Firmware
	if len(img) == 0 {
		return nil
	}
	if m.sys.CheckExtension(kvm.CapReadonlyMem) <= 0 {
		return fmt.Errorf("vm: firmware boot needs KVM_CAP_READONLY_MEM, which this host's KVM lacks")
	}
	rom, err := unix.Mmap(-1, 0, len(img), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("vm: memory for the firmware image: %w", err)
	}
	copy(rom, img)
	m.rom = rom // unmapped by Close, after the VM
	return m.kvm.SetUserMemoryRegion(romSlot, kvm.MemReadOnly, 1<<32-uint64(len(img)), rom)
}

// setupFirmware adds what the firmware talks to: fw_cfg, its debug port,
// and QEMU's subsystem IDs on the host bridge. It runs after the PCI
// devices exist, whose slots make the boot order.
func (m *Machine) setupFirmware() error {
	if len(m.cfg.Firmware) == 0 {
		return nil
	}
	hb := m.pci.HostBridge()
	hb.SetU16(pci.RegSubsysVendor, qemuSubsystemVendor)
	hb.SetU16(pci.RegSubsysVendor+2, qemuSubsystem)

	var ram []qemufw.MemRange
	for _, r := range m.mem.Regions() {
		ram = append(ram, qemufw.MemRange{Start: r.GPA, Size: uint64(len(r.Host)), Type: qemufw.E820RAM})
	}
	// The pages KVM uses for real mode on Intel (KVM_SET_TSS_ADDR,
	// KVM_SET_IDENTITY_MAP_ADDR) must stay out of the OS's hands.
	_, identity := realModePages(m.cfg)
	ram = append(ram, qemufw.MemRange{Start: identity, Size: 0x4000, Type: qemufw.E820Reserved})
	var order []string
	for i := range m.cfg.Disks {
		// setupVirtio puts disk i in slot 1+i.
		if m.uefi() {
			order = append(order, uefiBootOrder(pci.FirstSlot+i))
		} else {
			order = append(order, qemufw.PCIPath(pci.FirstSlot+i))
		}
	}
	acfg := acpi.DefaultConfig(m.cfg.CPUs)
	acfg.RTCCenturyIndex = 0x32
	acfg.HotplugSlots = m.hotplugSlots()
	bits, err := m.guestPhysBits()
	if err != nil {
		return err
	}
	acfg.PCIMMIO64Start, acfg.PCIMMIO64Size = pci64Window(m.cfg.MemoryMiB, bits)
	dev := fwcfg.New(m.mem)
	if err := qemufw.Fill(dev, qemufw.Config{
		CPUs: m.cfg.CPUs, RAM: ram, BootOrder: order, SerialPort: uart8250.COM1Base, ACPI: acfg, UUID: m.cfg.UUID,
	}); err != nil {
		return fmt.Errorf("vm: firmware configuration: %w", err)
	}
	if m.uefi() {
		if err := m.setupUEFIPlatform(dev, acfg.PCIMMIO64Start, acfg.PCIMMIO64Size); err != nil {
			return err
		}
	}
	if err := m.pio.Register(fwcfg.Base, fwcfg.Size, dev); err != nil {
		return fmt.Errorf("vm: fw_cfg ports: %w", err)
	}
	if m.cfg.FirmwareLog != nil {
		if err := m.pio.Register(firmwareDebugPort, 1, debugcon{m.cfg.FirmwareLog}); err != nil {
			return fmt.Errorf("vm: firmware debug port: %w", err)
		}
	}
	m.fwcfg = dev
	return nil
}

// loadFirmware copies the image's end below 1 MiB, where the reset
// vector's far jump lands (F000:E05B) and where SeaBIOS runs and keeps its
// data. QEMU shows the last 128 KiB there read-only (its "isa-bios" alias,
// hw/i386/x86-common.c x86_bios_rom_init); SeaBIOS then makes
// 0xC0000-0xFFFFF RAM through the i440FX/Q35 PAM registers and copies
// itself there from the alias below 4 GiB, at address - 0xFFF00000
// (src/fw/shadow.c make_bios_writable), its code starting as low as
// 0xC0000. govisor's host bridge has no PAM registers (SeaBIOS logs
// "Unable to unlock ram - bridge not found"), so the VMM lays out what
// that copy produces: the image's last 256 KiB in plain RAM at 0xC0000.
func (m *Machine) loadFirmware() (entryState, error) {
	img := m.cfg.Firmware
	if m.uefi() {
		// OVMF runs from flash from the reset vector on (its SEC phase,
		// OvmfPkg/ResetVector): nothing goes below 1 MiB.
		m.bootLog = fmt.Sprintf("UEFI firmware, %d bytes of code at %#x, %d of variables at %#x", len(img), 1<<32-len(img), len(m.vars), m.varsBase())
		return entryState{}, nil
	}
	low := img[len(img)-min(len(img), lowBIOSSize):]
	if _, err := m.mem.WriteAt(low, int64(0x100000-len(low))); err != nil {
		return entryState{}, fmt.Errorf("vm: firmware below 1 MiB: %w", err)
	}
	m.bootLog = fmt.Sprintf("firmware, %d bytes at %#x (last %d also at %#x)", len(img), 1<<32-len(img), len(low), 0x100000-len(low))
	return entryState{}, nil
}

// debugcon is QEMU's ISA debug console: bytes written go to w.
type debugcon struct{ w io.Writer }

func (d debugcon) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = debugconReadback
	}
}

func (d debugcon) Write(_ uint64, data []byte) { _, _ = d.w.Write(data) }
