package vm

import (
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/internal/firmware/fwcfg"
	"github.com/govisor/govisor/internal/firmware/pflash"
	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/pci"
)

// UEFI boot (OVMF): the firmware's code and its variable store are two
// flash banks at the top of the 32-bit address space, the code ending at
// 4 GiB and the variables right below it, as QEMU's PC machine maps its
// pflash units 0 and 1 (hw/i386/pc_sysfw.c pc_system_flash_map). OVMF's
// 4 MiB build expects exactly that (PcdOvmfFlashNvStorageVariableBase
// 0xFFC00000). The code bank is the read-only mapping mapFirmware makes;
// the variable bank is a pflash device whose contents are a shared mapping
// of the VM's variable file, mapped into the guest read-only while the bank
// is in read array mode (reads at memory speed, writes exit to the device)
// and unmapped otherwise, so that reads reach the status register (QEMU's
// "romd" mode, hw/block/pflash_cfi01.c).
//
// OVMF also insists on a chipset it knows (OvmfPkg/Library/PlatformInitLib
// Platform.c PlatformMiscInitialization: i440FX or Q35, else it stops): the
// host bridge shows i440FX's ID, and the PIIX4 power management function
// at 00:01.3 reports govisor's fixed ACPI PM block (0x600, whose timer
// OVMF's AcpiTimerLib reads) as already enabled, so that OVMF keeps it.
//
// OVMF puts its own console on COM1 only through a PCI-to-ISA bridge,
// which its SioBusDxe turns into the serial port PciSioSerialDxe drives and
// its boot manager adds to ConOut (OvmfPkg/Library/PlatformBootManagerLib
// BdsPlatform.c, "Found LPC Bridge device"). QEMU has PIIX3 at 00:01.0,
// where govisor has its first disk; govisor's ISA bridge is function 1 of
// the host bridge, which then says it is a multi-function device.
const (
	// uefiTSSAddr and uefiIdentityMap move the pages Intel VMX needs for
	// real mode out of the flash, where QEMU puts them (0xFEFFC000,
	// target/i386/kvm/kvm.c kvm_arch_init).
	uefiTSSAddr     = 0xFEFFD000
	uefiIdentityMap = 0xFEFFC000
	// maxUEFIFlash keeps both banks above the identity map.
	maxUEFIFlash = 1<<32 - uefiIdentityMap - 0x4000
	// varsSlot is the KVM memory slot of the variable bank.
	varsSlot = romSlot + 1
	// ovmfBlockSize is OVMF's flash block (PcdOvmfFirmwareBlockSize).
	ovmfBlockSize = 4096

	intelVendorID   = 0x8086
	i440FXDeviceID  = 0x1237 // 82441FX host bridge (OVMF INTEL_82441_DEVICE_ID)
	piix4PMDeviceID = 0x7113 // 82371AB power management function
	// isaBridgeDeviceID is the ISA bridge's ID: one of Red Hat's (QEMU's
	// vendor ID, docs/specs/pci-ids.rst) that list leaves unassigned, so
	// that no Linux driver binds it; firmware goes by its class.
	isaBridgeDeviceID = 0x00FE
	classISABridge    = 0x060100
	headerMultiFn     = 0x80 // PCI 3.0 section 6.2.1, Header Type bit 7
	piix4PMSlot       = 1
	piix4PMFunction   = 3
	// PIIX4 PM registers (Intel 82371AB datasheet section 3.6): PMBA, the
	// PM I/O base (bit 0 set: an I/O address), and PMREGMISC, whose bit 0
	// (PMIOSE) enables it.
	piix4PMBA      = 0x40
	piix4PMREGMISC = 0x80
	piix4PMIOSE    = 0x01
	acpiPMBase     = 0x600 // acpi.PM1aEventBlock

	// fwcfgPciMmio64Mb sizes OVMF's 64-bit PCI aperture (OvmfPkg
	// PlatformInitLib MemDetect.c PlatformGetFirstNonAddress), in MiB
	// as decimal text: see ovmfAperture.
	fwcfgPciMmio64Mb = "opt/ovmf/X-PciMmio64Mb"
	// maxOVMFAperture is OVMF's own default aperture (PcdPciMmio64Size).
	maxOVMFAperture = 32 << 30
)

// uefi reports whether the machine boots OVMF.
func (m *Machine) uefi() bool { return m.cfg.FirmwareVars != nil }

// checkUEFI checks the flash sizes of a UEFI configuration.
func checkUEFI(cfg Config) error {
	fi, err := cfg.FirmwareVars.Stat()
	if err != nil {
		return fmt.Errorf("vm: UEFI variable store: %w", err)
	}
	code, vars := len(cfg.Firmware), fi.Size()
	if code == 0 {
		return fmt.Errorf("vm: a UEFI variable store without firmware: give OVMF's code image too")
	}
	if vars <= 0 || vars%ovmfBlockSize != 0 || code%ovmfBlockSize != 0 || int64(code)+vars > maxUEFIFlash {
		return fmt.Errorf("vm: UEFI flash of %d bytes of code and %d of variables: want multiples of 4 KiB, %d bytes at most together (OVMF_CODE_4M.fd and OVMF_VARS_4M.fd are 3653632 and 540672)", code, vars, maxUEFIFlash)
	}
	return nil
}

// realModePages returns where KVM's real-mode pages go for this machine.
func realModePages(cfg Config) (tss, identity uint64) {
	if cfg.FirmwareVars != nil {
		return uefiTSSAddr, uefiIdentityMap
	}
	return tssAddr, identityMap
}

// varsBase is the guest-physical address of the variable bank.
func (m *Machine) varsBase() uint64 {
	return 1<<32 - uint64(len(m.cfg.Firmware)) - uint64(len(m.vars))
}

// mapVars maps the variable file shared and puts the flash device over it.
func (m *Machine) mapVars() error {
	if !m.uefi() {
		return nil
	}
	fi, err := m.cfg.FirmwareVars.Stat()
	if err != nil {
		return fmt.Errorf("vm: UEFI variable store: %w", err)
	}
	vars, err := unix.Mmap(int(m.cfg.FirmwareVars.Fd()), 0, int(fi.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("vm: mapping the UEFI variable store %s: %w", m.cfg.FirmwareVars.Name(), err)
	}
	m.vars = vars // unmapped by Close, after the VM
	base := m.varsBase()
	m.varsFlash, err = pflash.New(vars, ovmfBlockSize, false, func(readArray bool) {
		// Called under the bank's lock on a vCPU thread. A failure
		// leaves reads exiting to the device, which still answers them.
		if readArray {
			_ = m.kvm.SetUserMemoryRegion(varsSlot, kvm.MemReadOnly, base, vars)
		} else {
			_ = m.kvm.SetUserMemoryRegion(varsSlot, kvm.MemReadOnly, base, nil)
		}
	})
	if err != nil {
		return fmt.Errorf("vm: UEFI variable store: %w", err)
	}
	if err := m.mmio.Register(base, uint64(len(vars)), m.varsFlash); err != nil {
		return fmt.Errorf("vm: UEFI variable flash: %w", err)
	}
	return m.kvm.SetUserMemoryRegion(varsSlot, kvm.MemReadOnly, base, vars)
}

// syncVars writes the variable store back to its file.
func (m *Machine) syncVars() error {
	if m.vars == nil {
		return nil
	}
	if err := unix.Msync(m.vars, unix.MS_SYNC); err != nil {
		return fmt.Errorf("vm: writing the UEFI variable store: %w", err)
	}
	return nil
}

// closeVars writes back and unmaps the variable store.
func (m *Machine) closeVars() {
	if m.vars == nil {
		return
	}
	_ = m.syncVars()
	_ = unix.Munmap(m.vars)
	m.vars = nil
}

// setupUEFIPlatform gives the chipset identity and fw_cfg items OVMF needs
// beyond SeaBIOS's; the DSDT's 64-bit window is [win64, win64+win64Size).
func (m *Machine) setupUEFIPlatform(dev *fwcfg.Device, win64, win64Size uint64) error {
	hb := m.pci.HostBridge()
	hb.SetU16(pci.RegVendorID, intelVendorID)
	hb.SetU16(pci.RegDeviceID, i440FXDeviceID)
	pm := pci.NewConfigSpace(pci.Header{VendorID: intelVendorID, DeviceID: piix4PMDeviceID, Class: 0x068000, Revision: 3})
	// Read-only: the PM block is fixed at 0x600, whatever firmware writes.
	pm.SetU32(piix4PMBA, acpiPMBase|1)
	pm.SetU8(piix4PMREGMISC, piix4PMIOSE)
	if err := m.pci.AddFunction(piix4PMSlot, piix4PMFunction, pm); err != nil {
		return fmt.Errorf("vm: PIIX4 power management function: %w", err)
	}
	hb.SetU8(pci.RegHeaderType, headerMultiFn)
	isa := pci.NewConfigSpace(pci.Header{VendorID: pci.HostBridgeVendorID, DeviceID: isaBridgeDeviceID, Class: classISABridge,
		SubsystemVendorID: qemuSubsystemVendor, SubsystemID: qemuSubsystem})
	if err := m.pci.AddFunction(0, 1, isa); err != nil {
		return fmt.Errorf("vm: ISA bridge: %w", err)
	}
	aperture := ovmfAperture(win64, win64Size)
	if err := dev.AddFile(fwcfgPciMmio64Mb, []byte(strconv.FormatUint(aperture>>20, 10))); err != nil {
		return fmt.Errorf("vm: firmware configuration: %w", err)
	}
	if err := m.pio.Register(ovmfPMBase+ovmfPM1Cnt, 2, ovmfShutdown{m}); err != nil {
		return fmt.Errorf("vm: OVMF's shutdown port: %w", err)
	}
	return nil
}

// ovmfAperture returns the size of the 64-bit PCI aperture OVMF gets, so
// that it lies inside the DSDT's 64-bit window [start, start+size): OVMF
// starts the aperture at the end of RAM (its highest e820 RAM entry)
// rounded up to 1 GiB, which is start, then aligns it to the largest power
// of two not above its size (MemDetect.c PlatformGetFirstNonAddress). The
// size is the largest power of two from 1 GiB to maxOVMFAperture that
// fits; 0 (no window, or none fits) turns the aperture off and OVMF puts
// every BAR below 4 GiB, in the 32-bit window. OVMF from edk2-stable202211
// on uses this "classic" aperture only when it does not trust the CPU's
// physical address width; when it does (CPUID 0x80000008, capped at 46 or
// 47 bits and at 40 without 1 GiB pages), it takes the top eighth of that
// address space (PlatformInitLib PlatformDynamicMmioWindow), as SeaBIOS
// does, which the window also holds.
func ovmfAperture(start, size uint64) uint64 {
	if size == 0 {
		return 0
	}
	end := start + size
	for s := uint64(maxOVMFAperture); s >= 1<<30; s >>= 1 {
		base := (start + s - 1) &^ (s - 1)
		if base >= start && base+s <= end {
			return s
		}
	}
	return 0
}

// OVMF's ResetSystem(EfiResetShutdown), which GRUB's "halt" and the UEFI
// shell's "reset -s" call, does not follow PMBA: on an i440FX board it
// writes PIIX4's PM1a_CNT at the fixed PIIX4_PMBA_VALUE + 4 with SLP_TYP 0,
// QEMU's PIIX4 soft-off type, and SLP_EN (OvmfPkg/Library/ResetSystemLib
// BaseResetShutdown.c and DxeResetShutdown.c), then loops for ever.
const (
	ovmfPMBase  = 0xB000 // OvmfPlatforms.h PIIX4_PMBA_VALUE
	ovmfPM1Cnt  = 4
	pm1SlpEn    = 1 << 13 // ACPI 6.5 table 4.18
	pm1SlpShift = 10
)

// ovmfShutdown powers the machine off on OVMF's PIIX4 soft-off request.
type ovmfShutdown struct{ m *Machine }

// Read implements iobus.Device: SCI_EN, as the real PM1a_CNT reads (OVMF
// reads the register before it writes it).
func (d ovmfShutdown) Read(offset uint64, data []byte) {
	clear(data)
	if offset == 0 && len(data) > 0 {
		data[0] = 1
	}
}

// Write implements iobus.Device.
func (d ovmfShutdown) Write(offset uint64, data []byte) {
	if piix4SoftOff(offset, data) {
		d.m.stop(Exit{Reason: ExitPowerOff, Detail: "firmware shutdown (PIIX4 PM1a_CNT at 0xB004)"})
	}
}

// piix4SoftOff reports whether a write of data at offset into PIIX4's
// 16-bit PM1a_CNT sets SLP_EN with SLP_TYP 0 (both in the high byte).
func piix4SoftOff(offset uint64, data []byte) bool {
	if offset > 1 || uint64(len(data)) < 2-offset {
		return false
	}
	hi := uint16(data[1-offset]) << 8
	return hi&pm1SlpEn != 0 && (hi>>pm1SlpShift)&7 == 0
}

// uefiBootOrder is the Open Firmware path QEMU gives a virtio-blk disk in
// slot (hw/nvram/fw_cfg.c get_boot_devices_list: the PCI node named by the
// function's class, SCSI storage, then virtio-blk's "disk@0,0"), which
// OVMF's QemuBootOrderLib translates to PciRoot(0x0)/Pci(slot,0x0).
func uefiBootOrder(slot int) string { return fmt.Sprintf("/pci@i0cf8/scsi@%x/disk@0,0", slot) }
