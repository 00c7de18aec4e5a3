package hyperv

import (
	"strings"

	"github.com/govisor/govisor/internal/vmimport"
)

// biosGUID keeps the VM's BIOS GUID, which Hyper-V presents to the guest as
// its SMBIOS system UUID (Msvm_VirtualSystemSettingData.BIOSGUID in the
// WMI API; a Windows guest's Win32_ComputerSystemProduct.UUID is that GUID
// as written). The XML keeps it in a bios_guid element, under
// settings/bios in the exports govisor knows of; the first one anywhere in
// the configuration is taken, so that a different nesting still works.
// properties/global_id, the VM's ID, is not it.
//
// Hyper-V stores the GUID in Windows's GUID layout, which is DSP0134
// 7.2.1's (first three fields little-endian). A generation 2 VM's UEFI
// firmware reports SMBIOS 2.6 or later, so every guest reads the GUID as
// written; a generation 1 VM's BIOS reports an older version, so Linux's
// product_uuid shows the GUID with its first three fields swapped while
// Windows still shows it as written. Sources: Azure/WALinuxAgent#830 and
// MicrosoftDocs/azure-docs#94467 (Azure's VM ID is the BIOS GUID; Linux
// sees it swapped on SMBIOS < 2.6 only), cloud-init's
// cloudinit/sources/azure/identity.py (byte_swap_system_uuid for
// generation 1), candlepin/virt-who#421 (generation 2 needs no swap).
func biosGUID(cfg *node, vm *vmimport.VM) {
	n := find(cfg, "bios_guid", 0)
	if n == nil || n.value() == "" {
		return
	}
	g, ok := vmimport.ParseUUID(n.value())
	if !ok {
		vm.BadUUID("bios_guid", n.value())
		return
	}
	s := vmimport.SMBIOSUUID{Field: "bios_guid", Raw: vmimport.SwapUUIDFields(g), Why: "generation 1: SMBIOS before 2.6"}
	if vm.Firmware == vmimport.FirmwareUEFI {
		s.Wire, s.Why = true, "generation 2: SMBIOS 2.6 or later"
	}
	vm.KeepUUID(s)
}

// find is the first element named name (any case) under n, depth first.
func find(n *node, name string, depth int) *node {
	if depth > maxDepth {
		return nil
	}
	for _, c := range n.children {
		if strings.EqualFold(c.name, name) {
			return c
		}
		if f := find(c, name, depth+1); f != nil {
			return f
		}
	}
	return nil
}
