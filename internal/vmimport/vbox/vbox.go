// Package vbox reads a VirtualBox machine settings file (.vbox), the XML
// VirtualBox documents in its settings schema (src/VBox/Main/xml/
// VirtualBox-settings.xsd): Machine/Hardware (CPU count, Memory RAMSize,
// Firmware type, Network/Adapter with MACAddress), the storage controllers
// whose AttachedDevice/Image uuid names a medium of the MediaRegistry, and
// the MediaRegistry's HardDisk tree, where a differencing image (a
// snapshot) is the child element of its parent; and the machine's SMBIOS
// UUID (Machine uuid, Hardware uuid, ExtraData DmiSystemUuid).
package vbox

import (
	"encoding/xml"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/govisor/govisor/internal/vmimport"
)

type hardDisk struct {
	UUID     string     `xml:"uuid,attr"`
	Location string     `xml:"location,attr"`
	Format   string     `xml:"format,attr"`
	Children []hardDisk `xml:"HardDisk"`
}

type controller struct {
	Name     string `xml:"name,attr"`
	Type     string `xml:"type,attr"`
	Attached []struct {
		Type   string `xml:"type,attr"`
		Port   int    `xml:"port,attr"`
		Device int    `xml:"device,attr"`
		Image  struct {
			UUID string `xml:"uuid,attr"`
		} `xml:"Image"`
	} `xml:"AttachedDevice"`
}

type adapter struct {
	Slot    int    `xml:"slot,attr"`
	Enabled string `xml:"enabled,attr"`
	MAC     string `xml:"MACAddress,attr"`
	Type    string `xml:"type,attr"`
	// The attachment: one of these child elements names the network.
	NAT      *struct{} `xml:"NAT"`
	Bridged  *named    `xml:"BridgedInterface"`
	Internal *named    `xml:"InternalNetwork"`
	HostOnly *named    `xml:"HostOnlyInterface"`
	NATNet   *named    `xml:"NATNetwork"`
}

type named struct {
	Name string `xml:"name,attr"`
}

type hardware struct {
	// UUID is the hardware UUID, set when it differs from the
	// machine's (a clone that keeps its source's).
	UUID string `xml:"uuid,attr"`
	CPU  struct {
		Count string `xml:"count,attr"`
	} `xml:"CPU"`
	Memory struct {
		RAMSize string `xml:"RAMSize,attr"`
	} `xml:"Memory"`
	Firmware struct {
		Type string `xml:"type,attr"`
	} `xml:"Firmware"`
	Adapters []adapter `xml:"Network>Adapter"`
	Audio    struct {
		Enabled string `xml:"enabled,attr"`
		Driver  string `xml:"driver,attr"`
	} `xml:"AudioAdapter"`
	USB           []named      `xml:"USB>Controllers>Controller"`
	SharedFolders []named      `xml:"SharedFolders>SharedFolder"`
	Controllers   []controller `xml:"StorageControllers>StorageController"`
	RemoteDisplay struct {
		Enabled string `xml:"enabled,attr"`
	} `xml:"RemoteDisplay"`
}

type settings struct {
	Machine struct {
		Name      string     `xml:"name,attr"`
		UUID      string     `xml:"uuid,attr"`
		OSType    string     `xml:"OSType,attr"`
		ExtraData []extra    `xml:"ExtraData>ExtraDataItem"`
		Disks     []hardDisk `xml:"MediaRegistry>HardDisks>HardDisk"`
		Hardware  hardware   `xml:"Hardware"`
		// Settings before VirtualBox 7 keep the storage controllers
		// beside Hardware, not in it.
		Controllers []controller `xml:"StorageControllers>StorageController"`
	} `xml:"Machine"`
}

// extra is an ExtraDataItem: a key the GUI or VBoxManage setextradata set.
type extra struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// Parse reads the text of a .vbox file. Disk chains hold the images'
// locations as the file gives them (relative ones to its folder), base
// first.
func Parse(text []byte) (*vmimport.VM, error) {
	if len(text) > vmimport.MaxFileSize {
		return nil, fmt.Errorf("%w: .vbox of %d bytes", vmimport.ErrBadConfig, len(text))
	}
	var s settings
	if err := xml.Unmarshal(text, &s); err != nil {
		return nil, fmt.Errorf("%w: %v", vmimport.ErrBadConfig, err)
	}
	m := s.Machine
	hw := m.Hardware
	vm := &vmimport.VM{Name: m.Name, Firmware: vmimport.FirmwareBIOS}
	if vm.Name == "" {
		return nil, fmt.Errorf("%w: no Machine name", vmimport.ErrBadConfig)
	}
	if hw.CPU.Count != "" {
		n, err := strconv.Atoi(hw.CPU.Count)
		if err != nil || n < 1 || n > vmimport.MaxCPUs {
			return nil, fmt.Errorf("%w: CPU count %q", vmimport.ErrBadConfig, hw.CPU.Count)
		}
		vm.CPUs = n
	}
	if hw.Memory.RAMSize != "" {
		n, err := strconv.ParseInt(hw.Memory.RAMSize, 10, 64)
		if err != nil || n < 1 || n > vmimport.MaxMemoryMiB {
			return nil, fmt.Errorf("%w: RAMSize %q", vmimport.ErrBadConfig, hw.Memory.RAMSize)
		}
		vm.MemoryMiB = n
	}
	// Firmware type is BIOS, EFI, EFI32, EFI64 or EFIDUAL.
	if strings.HasPrefix(strings.ToUpper(hw.Firmware.Type), "EFI") {
		vm.Firmware = vmimport.FirmwareUEFI
	}
	vm.OS = m.OSType
	ed := map[string]string{}
	for _, e := range m.ExtraData {
		ed[e.Name] = e.Value
	}
	vm.KeepVBoxUUID(m.UUID, hw.UUID, ed)
	chains := map[string][]string{}
	if err := mediaChains(m.Disks, nil, chains, 0); err != nil {
		return nil, err
	}
	if err := attachments(vm, append(hw.Controllers, m.Controllers...), chains); err != nil {
		return nil, err
	}
	if err := nics(vm, hw.Adapters); err != nil {
		return nil, err
	}
	if isTrue(hw.Audio.Enabled) {
		vm.Dropped = append(vm.Dropped, "audio adapter "+hw.Audio.Driver)
	}
	for _, c := range hw.USB {
		vm.Dropped = append(vm.Dropped, "USB controller "+c.Name)
	}
	for _, f := range hw.SharedFolders {
		vm.Dropped = append(vm.Dropped, "shared folder "+f.Name)
	}
	if isTrue(hw.RemoteDisplay.Enabled) {
		vm.Dropped = append(vm.Dropped, "VRDE remote display")
	}
	if err := vm.Check(); err != nil {
		return nil, err
	}
	return vm, nil
}

func isTrue(s string) bool { return strings.EqualFold(s, "true") || s == "1" }

// uuidKey normalizes "{6A1C...}" and "6a1c..." alike.
func uuidKey(s string) string { return strings.ToLower(strings.Trim(strings.TrimSpace(s), "{}")) }

// mediaChains walks the HardDisk tree: each medium's chain is its
// ancestors' locations then its own.
func mediaChains(disks []hardDisk, parent []string, out map[string][]string, depth int) error {
	if depth >= vmimport.MaxChain {
		return fmt.Errorf("%w: differencing disks nested more than %d deep", vmimport.ErrBadConfig, vmimport.MaxChain)
	}
	for _, d := range disks {
		if d.Location == "" {
			return fmt.Errorf("%w: medium %s has no location", vmimport.ErrBadConfig, d.UUID)
		}
		k := uuidKey(d.UUID)
		if _, dup := out[k]; dup || k == "" {
			return fmt.Errorf("%w: medium uuid %q missing or repeated", vmimport.ErrBadConfig, d.UUID)
		}
		chain := append(append([]string(nil), parent...), d.Location)
		out[k] = chain
		if err := mediaChains(d.Children, chain, out, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// attachments maps the hard disks attached to the storage controllers, in
// controller then port then device order; DVD and floppy drives are dropped.
func attachments(vm *vmimport.VM, ctrls []controller, chains map[string][]string) error {
	for _, c := range ctrls {
		att := c.Attached
		sort.SliceStable(att, func(i, j int) bool {
			if att[i].Port != att[j].Port {
				return att[i].Port < att[j].Port
			}
			return att[i].Device < att[j].Device
		})
		for _, a := range att {
			src := fmt.Sprintf("%s port %d device %d", c.Name, a.Port, a.Device)
			if a.Type != "HardDisk" {
				vm.Dropped = append(vm.Dropped, fmt.Sprintf("%s: %s drive", src, strings.ToLower(a.Type)))
				continue
			}
			chain, ok := chains[uuidKey(a.Image.UUID)]
			if !ok {
				return fmt.Errorf("%w: %s attaches medium %q, which the MediaRegistry lacks (a medium registered globally: export the VM from VirtualBox instead)", vmimport.ErrBadConfig, src, a.Image.UUID)
			}
			if len(vm.Disks) >= vmimport.MaxDisks {
				return fmt.Errorf("%w: more than %d disks", vmimport.ErrBadConfig, vmimport.MaxDisks)
			}
			vm.Mapped = append(vm.Mapped, fmt.Sprintf("%s (%s) %s -> virtio-blk vd%c", src, c.Type, strings.Join(chain, " <- "), 'a'+rune(len(vm.Disks)%26)))
			vm.Disks = append(vm.Disks, vmimport.Disk{Source: src, Chain: chain})
		}
	}
	return nil
}

// nics maps the enabled adapters, in slot order.
func nics(vm *vmimport.VM, adapters []adapter) error {
	sort.SliceStable(adapters, func(i, j int) bool { return adapters[i].Slot < adapters[j].Slot })
	for _, a := range adapters {
		if !isTrue(a.Enabled) {
			continue
		}
		nic := vmimport.NIC{Source: fmt.Sprintf("Adapter %d", a.Slot), Model: a.Type}
		switch {
		case a.NAT != nil:
			nic.Network = "NAT"
		case a.Bridged != nil:
			nic.Network = "bridged " + a.Bridged.Name
		case a.Internal != nil:
			nic.Network = "internal " + a.Internal.Name
		case a.HostOnly != nil:
			nic.Network = "host-only " + a.HostOnly.Name
		case a.NATNet != nil:
			nic.Network = "NAT network " + a.NATNet.Name
		}
		if a.MAC != "" {
			mac, ok := vmimport.NormalizeMAC(a.MAC)
			if !ok {
				return fmt.Errorf("%w: %s MACAddress %q", vmimport.ErrBadConfig, nic.Source, a.MAC)
			}
			nic.MAC = mac
		}
		if len(vm.NICs) >= vmimport.MaxNICs {
			return fmt.Errorf("%w: more than %d NICs", vmimport.ErrBadConfig, vmimport.MaxNICs)
		}
		vm.Mapped = append(vm.Mapped, fmt.Sprintf("%s (%s on %q) -> virtio-net, %s", nic.Source, nic.Model, nic.Network, nic.MAC))
		vm.NICs = append(vm.NICs, nic)
	}
	return nil
}
