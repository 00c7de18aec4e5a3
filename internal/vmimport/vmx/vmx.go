// Package vmx reads a VMware virtual machine configuration (.vmx): one
// `key = "value"` pair per line, keys case-insensitive, '#' comments, and
// VMware's "|XX" hex escape inside values (as VMware Workstation, Fusion
// and ESXi write them; VMware documents the keys in its knowledge base,
// e.g. KB 1714 "numvcpus", "memsize", and the per-device keys
// "<bus><N>:<M>.fileName"). It maps CPUs, memory, firmware, hard disks and
// NICs onto vmimport.VM and lists what govisor drops.
package vmx

import (
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/govisor/govisor/internal/vmimport"
)

// Parse reads the text of a .vmx file.
func Parse(text []byte) (*vmimport.VM, error) {
	if len(text) > vmimport.MaxFileSize {
		return nil, fmt.Errorf("%w: .vmx of %d bytes", vmimport.ErrBadConfig, len(text))
	}
	kv, err := pairs(string(text))
	if err != nil {
		return nil, err
	}
	vm := &vmimport.VM{Name: kv["displayname"]}
	if s, ok := kv["numvcpus"]; ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > vmimport.MaxCPUs {
			return nil, fmt.Errorf("%w: numvcpus %q", vmimport.ErrBadConfig, s)
		}
		vm.CPUs = n
	}
	if s, ok := kv["memsize"]; ok {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 || n > vmimport.MaxMemoryMiB {
			return nil, fmt.Errorf("%w: memsize %q", vmimport.ErrBadConfig, s)
		}
		vm.MemoryMiB = n
	}
	// firmware = "efi" selects UEFI; it is absent (BIOS) otherwise.
	vm.Firmware = vmimport.FirmwareBIOS
	if strings.EqualFold(kv["firmware"], "efi") {
		vm.Firmware = vmimport.FirmwareUEFI
	}
	vm.OS = kv["guestos"]
	biosUUID(kv, vm)
	if err := disks(kv, vm); err != nil {
		return nil, err
	}
	if err := nics(kv, vm); err != nil {
		return nil, err
	}
	dropped(kv, vm)
	if err := vm.Check(); err != nil {
		return nil, err
	}
	return vm, nil
}

// biosUUID keeps uuid.bios, the VM's SMBIOS UUID ("56 4d 12 34 56 78 9a
// bc-de f0 12 34 56 78 9a bc": its 16 bytes in order, as VMware's firmware
// stores them), read as the guest read it: see vmimport.VMwareUUID for
// how virtualHW.version and acpi.smbiosVersion2.7 decide that. Without
// uuid.bios VMware derives the UUID at power-on from the host and the
// .vmx's path (uuid.location), which a move changes anyway.
func biosUUID(kv map[string]string, vm *vmimport.VM) {
	s, ok := kv["uuid.bios"]
	if !ok {
		return
	}
	raw, ok := vmimport.ParseHexBytes(s)
	if !ok {
		vm.BadUUID("uuid.bios", s)
		return
	}
	hw, err := strconv.Atoi(strings.TrimSpace(kv["virtualhw.version"]))
	if err != nil || hw < 0 || hw > 999 {
		hw = 0
	}
	vm.KeepUUID(vmimport.VMwareUUID("uuid.bios", raw, hw, kv["acpi.smbiosversion2.7"]))
}

// pairs splits the file into lower-cased keys and unescaped values.
func pairs(text string) (map[string]string, error) {
	kv := map[string]string{}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%w: .vmx line %d has no '=': %q", vmimport.ErrBadConfig, n+1, trim(line))
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		kv[k] = unescape(v)
	}
	return kv, nil
}

// unescape decodes VMware's "|XX" escapes (|22 is '"', |7C is '|').
func unescape(s string) string {
	if !strings.Contains(s, "|") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '|' && i+2 < len(s) {
			if c, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(c))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func trim(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

func isTrue(s string) bool {
	switch strings.ToLower(s) {
	case "true", "yes", "1", "on":
		return true
	}
	return false
}

// slot is a device attached to a bus: "scsi0:1".
type slot struct {
	bus        string
	ctrl, unit int
}

// busOrder is the order disks are listed in, hence govisor's vda, vdb...:
// VMware's BIOS and EFI default boot order tries these buses in turn.
var busOrder = map[string]int{"ide": 0, "scsi": 1, "sata": 2, "nvme": 3}

// parseSlot reads "scsi0:1" from a key prefix.
func parseSlot(p string) (slot, bool) {
	for bus := range busOrder {
		rest, ok := strings.CutPrefix(p, bus)
		if !ok {
			continue
		}
		c, u, ok := strings.Cut(rest, ":")
		ci, err1 := strconv.Atoi(c)
		ui, err2 := strconv.Atoi(u)
		if !ok || err1 != nil || err2 != nil || ci < 0 || ui < 0 || ci > 99 || ui > 999 {
			return slot{}, false
		}
		return slot{bus, ci, ui}, true
	}
	return slot{}, false
}

// disks finds every present "<bus><N>:<M>" device: hard disks become
// vmimport.Disks, CD-ROMs and other kinds are dropped.
func disks(kv map[string]string, vm *vmimport.VM) error {
	var slots []slot
	seen := map[slot]bool{}
	for k := range kv {
		p, field, ok := strings.Cut(k, ".")
		if !ok || field != "filename" {
			continue
		}
		if s, ok := parseSlot(p); ok && !seen[s] {
			seen[s] = true
			slots = append(slots, s)
		}
	}
	sort.Slice(slots, func(i, j int) bool {
		a, b := slots[i], slots[j]
		if a.bus != b.bus {
			return busOrder[a.bus] < busOrder[b.bus]
		}
		if a.ctrl != b.ctrl {
			return a.ctrl < b.ctrl
		}
		return a.unit < b.unit
	})
	for _, s := range slots {
		name := fmt.Sprintf("%s%d:%d", s.bus, s.ctrl, s.unit)
		ctrl := fmt.Sprintf("%s%d", s.bus, s.ctrl)
		// A device is present only when it and its controller say so;
		// VMware leaves the keys of removed devices behind.
		if !isTrue(kv[name+".present"]) || (kv[ctrl+".present"] != "" && !isTrue(kv[ctrl+".present"])) {
			continue
		}
		file := kv[name+".filename"]
		typ := strings.ToLower(kv[name+".devicetype"])
		isDisk := strings.HasSuffix(strings.ToLower(file), ".vmdk") &&
			(typ == "" || typ == "disk" || typ == "scsi-harddisk" || typ == "ata-harddisk" || typ == "plaindisk" || typ == "rawdisk")
		if !isDisk {
			kind := typ
			if kind == "" {
				kind = "device"
			}
			vm.Dropped = append(vm.Dropped, fmt.Sprintf("%s: %s %q", name, kind, path.Base(file)))
			continue
		}
		model := kv[ctrl+".virtualdev"]
		if model == "" {
			model = s.bus
		}
		vm.Mapped = append(vm.Mapped, fmt.Sprintf("%s (%s) %s -> virtio-blk vd%c", name, model, file, 'a'+rune(len(vm.Disks)%26)))
		vm.Disks = append(vm.Disks, vmimport.Disk{Source: name, Chain: []string{file}})
		if len(vm.Disks) > vmimport.MaxDisks {
			return fmt.Errorf("%w: more than %d disks", vmimport.ErrBadConfig, vmimport.MaxDisks)
		}
	}
	return nil
}
