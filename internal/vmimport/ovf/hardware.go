package ovf

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/govisor/govisor/internal/vmimport"
)

// dropNames says how the report names the items govisor leaves out.
var dropNames = map[int]string{
	rtOther: "other device", rtFloppy: "floppy drive", rtCD: "CD drive", rtDVD: "DVD drive",
	rtSerial: "serial port", rtParallel: "parallel port", rtUSB: "USB controller",
	rtGraphics: "graphics controller", rtSound: "sound card",
}

// hardware maps one VirtualHardwareSection item onto vm.
func hardware(vm *vmimport.VM, it item, disks map[string]disk, used map[string]bool) error {
	if it.XMLName.Local == "Config" {
		// vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"
		switch strings.ToLower(it.Key) {
		case "firmware":
			if strings.EqualFold(it.Value, "efi") {
				vm.Firmware = vmimport.FirmwareUEFI
			}
		case "tools.synctime", "tools.afterpoweron", "tools.toolsupgradepolicy":
			if !contains(vm.Dropped, "VMware Tools settings") {
				vm.Dropped = append(vm.Dropped, "VMware Tools settings")
			}
		}
		return nil
	}
	rt, err := strconv.Atoi(strings.TrimSpace(it.ResourceType))
	if err != nil {
		return nil // a section-level element (Info, System) or vendor item
	}
	name := it.ElementName
	if name == "" {
		name = it.Caption
	}
	switch rt {
	case rtProcessor:
		n, err := strconv.Atoi(strings.TrimSpace(it.VirtualQuantity))
		if err != nil || n < 1 || n > vmimport.MaxCPUs {
			return fmt.Errorf("%w: %q CPUs", vmimport.ErrBadConfig, it.VirtualQuantity)
		}
		vm.CPUs = n
	case rtMemory:
		b, err := scaled(it.VirtualQuantity, it.AllocationUnits)
		if err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		vm.MemoryMiB = b >> 20
	case rtEthernet:
		nic := vmimport.NIC{Source: name, Model: strings.ToLower(strings.TrimSpace(it.ResourceSubType))}
		if nic.Source == "" {
			nic.Source = fmt.Sprintf("ethernet%d", len(vm.NICs))
		}
		if len(it.Connection) > 0 {
			nic.Network = strings.TrimSpace(it.Connection[0])
		}
		// DSP1050 (Ethernet Port Resource Virtualization): Address is the
		// MAC address.
		if a := strings.TrimSpace(it.Address); a != "" {
			mac, ok := vmimport.NormalizeMAC(a)
			if !ok {
				return fmt.Errorf("%w: NIC %s address %q", vmimport.ErrBadConfig, nic.Source, a)
			}
			nic.MAC = mac
		}
		if len(vm.NICs) >= vmimport.MaxNICs {
			return fmt.Errorf("%w: more than %d NICs", vmimport.ErrBadConfig, vmimport.MaxNICs)
		}
		mac := nic.MAC
		if mac == "" {
			mac = "a new MAC"
		}
		vm.Mapped = append(vm.Mapped, fmt.Sprintf("%s (%s on %q) -> virtio-net, %s", nic.Source, nic.Model, nic.Network, mac))
		vm.NICs = append(vm.NICs, nic)
	case rtDisk:
		for _, hr := range it.HostResource {
			// "ovf:/disk/<diskId>" (section 9.1) or the older "/disk/<diskId>".
			id := hr[strings.LastIndex(hr, "/")+1:]
			if _, ok := disks[id]; !ok || used[id] {
				continue
			}
			used[id] = true
			if err := attach(vm, disks, id, "ovf:/disk/"+id); err != nil {
				return err
			}
		}
	case rtIDE, rtSCSI, rtOtherStore:
		sub := it.ResourceSubType
		if sub == "" {
			sub = map[int]string{rtIDE: "IDE", rtSCSI: "SCSI", rtOtherStore: "SATA"}[rt]
		}
		vm.Mapped = append(vm.Mapped, fmt.Sprintf("controller %s (%s) -> virtio-blk", name, sub))
	default:
		if what, ok := dropNames[rt]; ok {
			if name != "" {
				what += " " + name
			}
			vm.Dropped = append(vm.Dropped, what)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
