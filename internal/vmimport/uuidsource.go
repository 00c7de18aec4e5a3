package vmimport

import (
	"fmt"
	"strings"
)

// VMwareUUID is the SMBIOS UUID of a VMware VM whose BIOS UUID (the .vmx's
// uuid.bios, the vSphere API's config.uuid, OVF's vmw:Config "uuid") is
// raw, in the order the configuration writes its bytes, on virtual
// hardware hwVersion (0: not said) with the .vmx or extra-config key
// acpi.smbiosVersion2.7 set to smbios27 ("" when absent).
//
// VMware's firmware stores those bytes in the type 1 structure as they
// are, and reports SMBIOS 2.7 from virtual hardware 13 (ESXi 6.5) on, 2.4
// before; acpi.smbiosVersion2.7 = "FALSE" keeps 2.4 on newer hardware (a
// VM upgraded from an older version, or an appliance that wants the old
// view). So a Linux guest's product_uuid is uuid.bios as written before
// hardware 13 and with its first three fields byte-swapped from 13 on,
// while Windows always reads it swapped. Sources: VMware KB 53609 (as the
// vmware/pyvmomi#688 and cfengine/masterfiles#1684 threads quote it),
// candlepin/virt-who virtwho/virt/esx/esx.py getVmUuid (hardware >= 13
// swaps) and its commit 2b53a78 (acpi.smbiosVersion2.7 FALSE does not),
// and the comment on that key in VMware's vCenter Server Appliance OVF
// ("set to FALSE to keep the behaviour same against the previous vmx
// versions (vmx < 13)").
func VMwareUUID(field string, raw [16]byte, hwVersion int, smbios27 string) SMBIOSUUID {
	s := SMBIOSUUID{Field: field, Raw: raw}
	switch {
	case strings.EqualFold(smbios27, "false"):
		s.Why = "acpi.smbiosVersion2.7 FALSE: SMBIOS 2.4"
	case strings.EqualFold(smbios27, "true"):
		s.Wire, s.Why = true, "acpi.smbiosVersion2.7 TRUE: SMBIOS 2.7"
	case hwVersion >= 13:
		s.Wire, s.Why = true, fmt.Sprintf("virtual hardware %d: SMBIOS 2.7", hwVersion)
	case hwVersion > 0:
		s.Why = fmt.Sprintf("virtual hardware %d: SMBIOS 2.4", hwVersion)
	default:
		s.Why = "no virtual hardware version: SMBIOS 2.4 assumed"
	}
	return s
}

// KeepVBoxUUID gives vm the SMBIOS UUID of a VirtualBox machine: the
// ExtraData override VBoxInternal/Devices/{pcbios,efi}/0/Config/
// DmiSystemUuid (the device of vm's firmware) if set and valid, else the
// Hardware element's uuid (set on clones that keep their source's), else
// the Machine's uuid, as IMachine::hardwareUUID documents ("the UUID
// presented to the guest via memory tables"). extra maps ExtraDataItem
// names to values; vm.Firmware must be set.
//
// VirtualBox's firmware (src/VBox/Devices/PC/DevPcBios.cpp, DevEFI.cpp,
// DevFwCommon.cpp) stores the UUID big-endian, RFC 4122 order, and
// reports SMBIOS 2.5 (VBOX_SMBIOS_MINOR_VER): a Linux guest reads the
// UUID as VirtualBox writes it, a Windows guest with its first three
// fields swapped, the "bug" DevEFI.cpp keeps "to not force reactivation
// of existing guests". The EFI device's UuidLe key stores the machine's
// UUID little-endian instead; it does not apply to DmiSystemUuid.
func (vm *VM) KeepVBoxUUID(machineUUID, hardwareUUID string, extra map[string]string) {
	dev := "pcbios"
	if vm.Firmware == FirmwareUEFI {
		dev = "efi"
	}
	key := "VBoxInternal/Devices/" + dev + "/0/Config/"
	const why = "VirtualBox: SMBIOS 2.5"
	if v, ok := extra[key+"DmiSystemUuid"]; ok {
		if u, ok := ParseUUID(v); ok {
			vm.KeepUUID(SMBIOSUUID{Field: "ExtraData " + key + "DmiSystemUuid", Raw: u, Why: why})
			return
		}
		// VirtualBox falls back to its default DMI data, the
		// machine's UUID, when the override does not parse.
		vm.BadUUID("ExtraData "+key+"DmiSystemUuid", v)
	}
	field, s := "Hardware uuid", hardwareUUID
	if strings.TrimSpace(s) == "" {
		field, s = "Machine uuid", machineUUID
	}
	if strings.TrimSpace(s) == "" {
		return
	}
	u, ok := ParseUUID(s)
	if !ok {
		vm.BadUUID(field, s)
		return
	}
	if v := extra[key+"UuidLe"]; dev == "efi" && (v == "1" || strings.EqualFold(v, "true")) {
		vm.KeepUUID(SMBIOSUUID{Field: field, Raw: SwapUUIDFields(u), Why: why + ", UuidLe"})
		return
	}
	vm.KeepUUID(SMBIOSUUID{Field: field, Raw: u, Why: why})
}
