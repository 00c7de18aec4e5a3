// Package hyperv reads the XML configuration of a VM exported by Hyper-V on
// Windows Server 2012 R2 and earlier ("Virtual Machines/<GUID>.xml" in the
// export folder). Hyper-V 2016 and later write a binary .vmcx instead,
// which Microsoft does not document: those exports are refused with a
// message saying so.
//
// The XML is untyped-schema: every value is an element whose text is the
// value and whose "type" attribute says its kind. The parts govisor reads:
//
//	configuration/properties/name            the VM's name
//	configuration/properties/subtype         0: generation 1 (BIOS), 1: generation 2 (UEFI)
//	configuration/settings/processors/count  vCPUs
//	configuration/settings/memory/bank/size  startup memory, MiB
//	.../controllerN/driveM/{pathname,type}   a drive; type VHD is a hard disk (.vhd, .vhdx,
//	                                         .avhdx), ISO a DVD; a controller whose parent has
//	                                         a ChannelInstanceGuid is synthetic SCSI, else IDE
//	.../<nic>/Connection/AltSwitchName       a network adapter on that virtual switch;
//	.../<nic>/address                        its MAC (12 hex digits)
//	settings/bios/bios_guid                  the BIOS GUID, the SMBIOS system UUID (see biosGUID)
package hyperv

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/govisor/govisor/internal/vmimport"
)

// ErrVMCX reports a Hyper-V 2016+ export, whose configuration is binary.
var ErrVMCX = errors.New("hyperv: the export holds a binary .vmcx configuration (Hyper-V 2016 and later), whose format Microsoft does not document; convert its disks (Virtual Hard Disks/*.vhdx, checkpoints included) with govisor image convert and define the VM by hand")

// node is an element of the configuration.
type node struct {
	name     string
	text     string
	children []*node
}

func (n *node) child(name string) *node {
	for _, c := range n.children {
		if strings.EqualFold(c.name, name) {
			return c
		}
	}
	return nil
}

// path follows child names; nil when one is missing.
func (n *node) path(names ...string) *node {
	for _, name := range names {
		if n == nil {
			return nil
		}
		n = n.child(name)
	}
	return n
}

func (n *node) value() string {
	if n == nil {
		return ""
	}
	return strings.TrimSpace(n.text)
}

const maxDepth = 64

// parseTree reads the XML into a tree, bounding depth and size.
func parseTree(text []byte) (*node, error) {
	d := xml.NewDecoder(bytes.NewReader(toUTF8(text)))
	d.CharsetReader = charsetReader
	root := &node{}
	stack := []*node{root}
	count := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", vmimport.ErrBadConfig, err)
		}
		top := stack[len(stack)-1]
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) > maxDepth {
				return nil, fmt.Errorf("%w: elements nested more than %d deep", vmimport.ErrBadConfig, maxDepth)
			}
			if count++; count > 1<<20 {
				return nil, fmt.Errorf("%w: too many elements", vmimport.ErrBadConfig)
			}
			n := &node{name: t.Name.Local}
			top.children = append(top.children, n)
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 1 {
				top.text += string(t)
			}
		}
	}
	cfg := root.child("configuration")
	if cfg == nil {
		return nil, fmt.Errorf("%w: no <configuration> element: not a Hyper-V VM configuration", vmimport.ErrBadConfig)
	}
	return cfg, nil
}

// Parse reads a Hyper-V VM configuration XML. Disk chains hold each
// drive's pathname as Hyper-V wrote it (a Windows path on the source
// host); a .avhdx names its parents itself.
func Parse(text []byte) (*vmimport.VM, error) {
	if len(text) > vmimport.MaxFileSize {
		return nil, fmt.Errorf("%w: configuration of %d bytes", vmimport.ErrBadConfig, len(text))
	}
	cfg, err := parseTree(text)
	if err != nil {
		return nil, err
	}
	vm := &vmimport.VM{Name: cfg.path("properties", "name").value(), Firmware: vmimport.FirmwareBIOS}
	if vm.Name == "" {
		return nil, fmt.Errorf("%w: no properties/name", vmimport.ErrBadConfig)
	}
	if cfg.path("properties", "subtype").value() == "1" {
		vm.Firmware = vmimport.FirmwareUEFI
	}
	if s := cfg.path("settings", "processors", "count").value(); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > vmimport.MaxCPUs {
			return nil, fmt.Errorf("%w: processors count %q", vmimport.ErrBadConfig, s)
		}
		vm.CPUs = n
	}
	if s := cfg.path("settings", "memory", "bank", "size").value(); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 || n > vmimport.MaxMemoryMiB {
			return nil, fmt.Errorf("%w: memory size %q", vmimport.ErrBadConfig, s)
		}
		vm.MemoryMiB = n
	}
	if strings.EqualFold(cfg.path("settings", "memory", "bank", "dynamic_memory_enabled").value(), "true") {
		vm.Dropped = append(vm.Dropped, "dynamic memory (the startup size is used)")
	}
	if strings.EqualFold(cfg.path("secure_boot_enabled").value(), "true") || strings.EqualFold(cfg.path("settings", "secure_boot_enabled").value(), "true") {
		vm.Dropped = append(vm.Dropped, "UEFI secure boot")
	}
	biosGUID(cfg, vm)
	if err := walk(cfg, vm); err != nil {
		return nil, err
	}
	if err := vm.Check(); err != nil {
		return nil, err
	}
	return vm, nil
}

// drive is a drive found under a controller, for ordering.
type drive struct {
	ide        bool
	ctrl, unit int
	path, typ  string
}

// walk finds controllers and NICs anywhere under cfg: Hyper-V keys the
// device elements by GUID, so their names say nothing.
func walk(cfg *node, vm *vmimport.VM) error {
	var drives []drive
	var visit func(n, parent *node) error
	visit = func(n, parent *node) error {
		if c, ok := strings.CutPrefix(strings.ToLower(n.name), "controller"); ok {
			ci, err := strconv.Atoi(c)
			if err == nil && ci >= 0 && ci < 100 {
				ide := parent == nil || parent.child("ChannelInstanceGuid") == nil
				for _, d := range n.children {
					u, ok := strings.CutPrefix(strings.ToLower(d.name), "drive")
					ui, err := strconv.Atoi(u)
					if !ok || err != nil || ui < 0 || ui > 999 || d.child("pathname").value() == "" {
						continue
					}
					drives = append(drives, drive{ide, ci, ui, d.child("pathname").value(), strings.ToUpper(d.child("type").value())})
				}
				return nil
			}
		}
		if sw := n.path("Connection", "AltSwitchName"); sw != nil {
			return addNIC(vm, n, sw.value())
		}
		for _, c := range n.children {
			if err := visit(c, n); err != nil {
				return err
			}
		}
		return nil
	}
	for _, c := range cfg.children {
		if err := visit(c, cfg); err != nil {
			return err
		}
	}
	// IDE before SCSI: a generation 1 VM boots from IDE.
	sort.SliceStable(drives, func(i, j int) bool {
		a, b := drives[i], drives[j]
		if a.ide != b.ide {
			return a.ide
		}
		if a.ctrl != b.ctrl {
			return a.ctrl < b.ctrl
		}
		return a.unit < b.unit
	})
	for _, d := range drives {
		bus := "SCSI"
		if d.ide {
			bus = "IDE"
		}
		src := fmt.Sprintf("%s %d:%d", bus, d.ctrl, d.unit)
		if d.typ != "VHD" {
			vm.Dropped = append(vm.Dropped, fmt.Sprintf("%s: %s drive %s", src, strings.ToLower(d.typ), d.path))
			continue
		}
		if len(vm.Disks) >= vmimport.MaxDisks {
			return fmt.Errorf("%w: more than %d disks", vmimport.ErrBadConfig, vmimport.MaxDisks)
		}
		vm.Mapped = append(vm.Mapped, fmt.Sprintf("%s %s -> virtio-blk vd%c", src, d.path, 'a'+rune(len(vm.Disks)%26)))
		vm.Disks = append(vm.Disks, vmimport.Disk{Source: src, Chain: []string{d.path}})
	}
	return nil
}

func addNIC(vm *vmimport.VM, n *node, sw string) error {
	nic := vmimport.NIC{Source: n.child("friendly_name").value(), Model: "hyper-v synthetic", Network: sw}
	if nic.Source == "" {
		nic.Source = fmt.Sprintf("Network Adapter %d", len(vm.NICs))
	}
	if n.child("ChannelInstanceGuid") == nil {
		nic.Model = "hyper-v legacy"
	}
	if a := n.child("address").value(); a != "" {
		mac, ok := vmimport.NormalizeMAC(a)
		if !ok {
			return fmt.Errorf("%w: %s address %q", vmimport.ErrBadConfig, nic.Source, a)
		}
		// A dynamic MAC is the source host's to hand out again; keep it
		// all the same: the guest's network configuration may name it.
		nic.MAC = mac
	}
	if len(vm.NICs) >= vmimport.MaxNICs {
		return fmt.Errorf("%w: more than %d NICs", vmimport.ErrBadConfig, vmimport.MaxNICs)
	}
	vm.Mapped = append(vm.Mapped, fmt.Sprintf("%s (%s on %q) -> virtio-net, %s", nic.Source, nic.Model, nic.Network, nic.MAC))
	vm.NICs = append(vm.NICs, nic)
	return nil
}
