package vmx

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/govisor/govisor/internal/vmimport"
)

// nics maps every present "ethernet<N>": its MAC is the static "address"
// (addressType = "static") or the one VMware generated and stored in
// "generatedAddress" (addressType = "generated" or "vpx").
func nics(kv map[string]string, vm *vmimport.VM) error {
	var idx []int
	for k := range kv {
		rest, ok := strings.CutPrefix(k, "ethernet")
		if !ok {
			continue
		}
		n, field, ok := strings.Cut(rest, ".")
		i, err := strconv.Atoi(n)
		if !ok || err != nil || i < 0 || i > 99 || field != "present" || !isTrue(kv[k]) {
			continue
		}
		idx = append(idx, i)
	}
	sort.Ints(idx)
	if len(idx) > vmimport.MaxNICs {
		return fmt.Errorf("%w: %d NICs", vmimport.ErrBadConfig, len(idx))
	}
	for _, i := range idx {
		p := fmt.Sprintf("ethernet%d.", i)
		nic := vmimport.NIC{Source: fmt.Sprintf("ethernet%d", i), Model: kv[p+"virtualdev"], Network: kv[p+"networkname"]}
		if nic.Model == "" {
			nic.Model = "vlance" // VMware's default adapter
		}
		if nic.Network == "" {
			nic.Network = kv[p+"connectiontype"]
		}
		raw := kv[p+"generatedaddress"]
		if strings.EqualFold(kv[p+"addresstype"], "static") || raw == "" {
			raw = kv[p+"address"]
		}
		if raw != "" {
			mac, ok := vmimport.NormalizeMAC(raw)
			if !ok {
				return fmt.Errorf("%w: %s MAC %q", vmimport.ErrBadConfig, nic.Source, raw)
			}
			nic.MAC = mac
		}
		mac := nic.MAC
		if mac == "" {
			mac = "a new MAC"
		}
		vm.Mapped = append(vm.Mapped, fmt.Sprintf("%s (%s on %q) -> virtio-net, %s", nic.Source, nic.Model, nic.Network, mac))
		vm.NICs = append(vm.NICs, nic)
	}
	return nil
}

// droppable are the .vmx switches of devices and features govisor has no
// counterpart for, with the words the report uses.
var droppable = []struct{ key, what string }{
	{"sound.present", "sound card"},
	{"usb.present", "USB controller"},
	{"ehci.present", "USB 2 controller"},
	{"usb_xhci.present", "USB 3 controller"},
	{"floppy0.present", "floppy drive"},
	{"serial0.present", "serial port 0 (govisor's console is its own)"},
	{"serial1.present", "serial port 1"},
	{"parallel0.present", "parallel port"},
	{"vmci0.present", "VMCI device (VMware Tools)"},
	{"svga.present", "SVGA display"},
	{"mks.enable3d", "3D acceleration"},
	{"vhv.enable", "nested virtualization"},
	{"vvtd.enable", "virtual IOMMU"},
}

// dropped lists the devices in the file that govisor leaves out.
func dropped(kv map[string]string, vm *vmimport.VM) {
	for _, d := range droppable {
		if isTrue(kv[d.key]) {
			vm.Dropped = append(vm.Dropped, d.what)
		}
	}
	if kv["tools.synctime"] != "" || kv["tools.upgrade.policy"] != "" || kv["toolscripts.afterpoweron"] != "" {
		vm.Dropped = append(vm.Dropped, "VMware Tools settings (uninstall VMware Tools in the guest)")
	}
	for _, k := range sortedKeys(kv) {
		if rest, ok := strings.CutPrefix(k, "sharedfolder"); ok && strings.HasSuffix(rest, ".present") && isTrue(kv[k]) {
			vm.Dropped = append(vm.Dropped, "shared folder "+kv[strings.TrimSuffix(k, ".present")+".guestname"])
		}
	}
	if kv["firmware"] != "" && !strings.EqualFold(kv["firmware"], "efi") && !strings.EqualFold(kv["firmware"], "bios") {
		vm.Dropped = append(vm.Dropped, fmt.Sprintf("firmware %q (BIOS used)", kv["firmware"]))
	}
	if isTrue(kv["uefi.secureboot.enabled"]) {
		vm.Dropped = append(vm.Dropped, "UEFI secure boot")
	}
}

func sortedKeys(kv map[string]string) []string {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
