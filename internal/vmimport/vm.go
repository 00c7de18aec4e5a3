// Package vmimport is the common model of a VM imported from another
// hypervisor: what its configuration file says (CPUs, memory, firmware,
// disks with their differencing chains, NICs with their MACs), in govisor
// terms, plus what could not be carried over. The parsers of the source
// formats (vmx, ovf, vbox, hyperv) fill it in without touching any file
// but the one they are given; the importer converts the disks.
package vmimport

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Firmware kinds a VM boots through.
const (
	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"
)

// ErrBadConfig reports a source configuration govisor cannot make sense of.
var ErrBadConfig = errors.New("vmimport: bad VM configuration")

// Limits a parsed VM must respect: they bound what a hostile file can ask
// the importer to do.
const (
	MaxCPUs      = 1024
	MaxMemoryMiB = 16 << 20 // 16 TiB
	MaxDisks     = 64
	MaxNICs      = 64
	MaxChain     = 64 // images in one differencing chain
	MaxFileSize  = 16 << 20
)

// VM is a source VM in govisor terms.
type VM struct {
	Name      string
	CPUs      int
	MemoryMiB int64
	// Firmware is FirmwareBIOS or FirmwareUEFI.
	Firmware string
	// OS is the guest operating system as the source names it (OVF's
	// osType, "ubuntu64Guest"), for the user; empty when it says none.
	OS string
	// UUID is the SMBIOS system UUID the VM keeps from its source, as
	// its guest read it there (8-4-4-4-12 hex digits, see SMBIOSUUID);
	// empty when the source has none, and the VM gets a new one.
	UUID string
	// Disks are the hard disks in boot order (the first one boots).
	Disks []Disk
	NICs  []NIC
	// Mapped says how source devices became govisor ones ("scsi0:0
	// (lsilogic) -> virtio-blk vda").
	Mapped []string
	// Dropped lists the devices govisor has no counterpart for (VMware
	// Tools, sound cards, USB controllers, floppy and CD drives, ...).
	Dropped []string
	// Gzip names the files (as the configuration does) that are stored
	// gzip-compressed: OVF's File compression="gzip" (DSP0243 5.x, the
	// References section), which the importer expands before reading.
	Gzip map[string]bool
}

// Disk is one hard disk of the source VM.
type Disk struct {
	// Source names the disk as its configuration does ("scsi0:0",
	// "SATA port 0", "ovf:/disk/vmdisk1").
	Source string
	// Chain is the disk's images, base first and the one the VM writes
	// last; paths are as the configuration gives them (relative ones to
	// its folder). A VMDK or VHD(X) names its own parent, so a chain
	// found that way may hold just the top image.
	Chain []string
	// Capacity is the disk's size in bytes when the configuration says
	// (0: the images' size).
	Capacity int64
}

// NIC is one network interface of the source VM.
type NIC struct {
	Source string // "ethernet0", "Adapter 0", ...
	MAC    string // aa:bb:cc:dd:ee:ff, empty when the source generates it at boot
	Model  string // the source's device model (e1000, vmxnet3, ...)
	// Network is the source's network name, for the report.
	Network string
}

// Check applies the limits to a parsed VM and fills in defaults (1 CPU,
// BIOS firmware).
func (vm *VM) Check() error {
	if vm.CPUs == 0 {
		vm.CPUs = 1
	}
	if vm.Firmware == "" {
		vm.Firmware = FirmwareBIOS
	}
	switch {
	case vm.CPUs < 0 || vm.CPUs > MaxCPUs:
		return fmt.Errorf("%w: %d CPUs (want 1 to %d)", ErrBadConfig, vm.CPUs, MaxCPUs)
	case vm.MemoryMiB < 0 || vm.MemoryMiB > MaxMemoryMiB:
		return fmt.Errorf("%w: %d MiB of memory", ErrBadConfig, vm.MemoryMiB)
	case len(vm.Disks) > MaxDisks:
		return fmt.Errorf("%w: %d disks (at most %d)", ErrBadConfig, len(vm.Disks), MaxDisks)
	case len(vm.NICs) > MaxNICs:
		return fmt.Errorf("%w: %d NICs (at most %d)", ErrBadConfig, len(vm.NICs), MaxNICs)
	}
	if _, ok := ParseUUID(vm.UUID); vm.UUID != "" && !ok {
		return fmt.Errorf("%w: UUID %q", ErrBadConfig, clip(vm.UUID))
	}
	for _, d := range vm.Disks {
		if len(d.Chain) > MaxChain {
			return fmt.Errorf("%w: disk %s has a chain of %d images", ErrBadConfig, d.Source, len(d.Chain))
		}
		if d.Capacity < 0 {
			return fmt.Errorf("%w: disk %s has a negative capacity", ErrBadConfig, d.Source)
		}
	}
	return nil
}

// NormalizeMAC turns a MAC in any of the usual spellings (00:50:56:aa:bb:cc,
// 00-50-56-AA-BB-CC, 005056AABBCC as VirtualBox and Hyper-V write it) into
// lower-case colon form; ok is false for anything else.
func NormalizeMAC(s string) (mac string, ok bool) {
	h := strings.NewReplacer(":", "", "-", "", ".", "").Replace(strings.TrimSpace(s))
	if len(h) != 12 {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < 12; i += 2 {
		for _, c := range h[i : i+2] {
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return "", false
			}
		}
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strings.ToLower(h[i : i+2]))
	}
	return b.String(), true
}

// WriteReport prints what was mapped and what was dropped, for a user.
func (vm *VM) WriteReport(w io.Writer) {
	fmt.Fprintf(w, "VM %s: %d CPUs, %d MiB, firmware %s\n", vm.Name, vm.CPUs, vm.MemoryMiB, vm.Firmware)
	for _, m := range vm.Mapped {
		fmt.Fprintf(w, "  mapped:  %s\n", m)
	}
	for _, d := range vm.Dropped {
		fmt.Fprintf(w, "  dropped: %s\n", d)
	}
}
