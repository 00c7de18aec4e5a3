package ovf

import (
	"strconv"
	"strings"

	"github.com/govisor/govisor/internal/vmimport"
)

// systemUUID keeps the source's SMBIOS system UUID. DSP0243 has no element
// for it: the VirtualSystem's ovf:id and vssd:VirtualSystemIdentifier name
// the system, they are no UUID. Vendors write it in their own elements:
//
//   - VMware: <vmw:Config vmw:key="uuid" vmw:value="..."/> in the
//     VirtualHardwareSection, the VM's BIOS UUID (the vSphere API's
//     config.uuid, the .vmx's uuid.bios, bytes in order), which vSphere and
//     ovftool write when asked to keep UUIDs (the OvfManager's "uuid" export
//     option, ovftool --exportFlags=uuid). How the guest read it depends on
//     the virtual hardware (VirtualSystemType "vmx-N") and on the
//     vmw:ExtraConfig acpi.smbiosVersion2.7: see vmimport.VMwareUUID.
//   - VirtualBox: vbox:Machine, its settings file's Machine element, whose
//     uuid, Hardware uuid and ExtraData say it: see
//     vmimport.KeepVBoxUUID.
//
// VMware's wins when both are there.
func systemUUID(vm *vmimport.VM, env *envelope) {
	var value, smbios27 string
	found := false
	hw := 0
	for _, h := range env.System.Hardware {
		hw = max(hw, vmxVersion(h.Type))
		for _, it := range h.Items {
			switch {
			case it.XMLName.Local == "Config" && strings.EqualFold(it.Key, "uuid"):
				value, found = it.Value, true
			case it.XMLName.Local == "ExtraConfig" && strings.EqualFold(it.Key, "acpi.smbiosVersion2.7"):
				smbios27 = it.Value
			}
		}
	}
	if found {
		raw, ok := vmimport.ParseHexBytes(value)
		if !ok {
			vm.BadUUID("vmw:Config uuid", value)
			return
		}
		vm.KeepUUID(vmimport.VMwareUUID("vmw:Config uuid", raw, hw, smbios27))
		return
	}
	m := env.System.VBox
	if strings.TrimSpace(m.UUID) == "" && strings.TrimSpace(m.Hardware.UUID) == "" {
		return
	}
	extra := map[string]string{}
	for _, e := range m.ExtraData {
		extra[e.Name] = e.Value
	}
	vm.KeepVBoxUUID(m.UUID, m.Hardware.UUID, extra)
}

// vmxVersion is the highest VMware virtual hardware version a
// VirtualSystemType names ("vmx-07 vmx-13": 13); 0 when it names none.
func vmxVersion(types string) int {
	v := 0
	for _, t := range strings.FieldsFunc(types, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' || r == '\n' }) {
		if n, ok := strings.CutPrefix(strings.ToLower(t), "vmx-"); ok {
			if i, err := strconv.Atoi(n); err == nil && i > v && i < 1000 {
				v = i
			}
		}
	}
	return v
}
