// Package ovf reads and writes OVF 1.x descriptors (DMTF DSP0243 "Open
// Virtualization Format Specification" 1.1/2.x): the References of the
// files, the DiskSection (section 9.1, with parentRef for delta disks), and
// the VirtualSystem's VirtualHardwareSection (section 9.5), whose items are
// CIM_ResourceAllocationSettingData (DSP1041/DSP1043) keyed by
// ResourceType. VMware's vmw:Config firmware key and VirtualBox's
// vbox:Machine Firmware element carry the firmware.
package ovf

import (
	"encoding/xml"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/govisor/govisor/internal/vmimport"
)

// CIM ResourceType values (CIM_ResourceAllocationSettingData.ResourceType,
// DSP0243 section 9.5 table "ResourceType").
const (
	rtOther      = 1
	rtProcessor  = 3
	rtMemory     = 4
	rtIDE        = 5
	rtSCSI       = 6
	rtEthernet   = 10
	rtFloppy     = 14
	rtCD         = 15
	rtDVD        = 16
	rtDisk       = 17
	rtOtherStore = 20
	rtSerial     = 21
	rtParallel   = 22
	rtUSB        = 23
	rtGraphics   = 24
	rtSound      = 35
)

// envelope mirrors the parts of a descriptor govisor reads. Names match in
// any namespace, so ovf:, rasd: and OVF 2's epasd:/sasd: all parse.
type envelope struct {
	Files []struct {
		ID          string `xml:"id,attr"`
		Href        string `xml:"href,attr"`
		Compression string `xml:"compression,attr"`
		ChunkSize   string `xml:"chunkSize,attr"`
	} `xml:"References>File"`
	Disks []struct {
		DiskID        string `xml:"diskId,attr"`
		FileRef       string `xml:"fileRef,attr"`
		Capacity      string `xml:"capacity,attr"`
		CapacityUnits string `xml:"capacityAllocationUnits,attr"`
		ParentRef     string `xml:"parentRef,attr"`
	} `xml:"DiskSection>Disk"`
	System struct {
		ID   string `xml:"id,attr"`
		Name string `xml:"Name"`
		// OperatingSystemSection (section 9.4): VMware names the guest
		// in vmw:osType, others in the Description.
		OS struct {
			Type        string `xml:"osType,attr"`
			Description string `xml:"Description"`
		} `xml:"OperatingSystemSection"`
		Hardware []struct {
			// VirtualSystemType names the virtual hardware
			// ("vmx-13", or a list "vmx-10 vmx-13").
			Type  string `xml:"System>VirtualSystemType"`
			Items []item `xml:",any"`
		} `xml:"VirtualHardwareSection"`
		// VirtualBox writes its whole machine config in vbox:Machine.
		VBox vboxMachine `xml:"Machine"`
	} `xml:"VirtualSystem"`
}

// vboxMachine is the part of VirtualBox's vbox:Machine govisor reads: the
// settings file's Machine element (see package vbox).
type vboxMachine struct {
	UUID     string `xml:"uuid,attr"`
	OSType   string `xml:"OSType,attr"`
	Hardware struct {
		UUID     string `xml:"uuid,attr"`
		Firmware struct {
			Type string `xml:"type,attr"`
		} `xml:"Firmware"`
	} `xml:"Hardware"`
	ExtraData []struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	} `xml:"ExtraData>ExtraDataItem"`
}

// item is a hardware item (Item, EthernetPortItem, StorageItem) or a
// vmw:Config element.
type item struct {
	XMLName         xml.Name
	InstanceID      string   `xml:"InstanceID"`
	ResourceType    string   `xml:"ResourceType"`
	ResourceSubType string   `xml:"ResourceSubType"`
	VirtualQuantity string   `xml:"VirtualQuantity"`
	AllocationUnits string   `xml:"AllocationUnits"`
	Address         string   `xml:"Address"`
	Connection      []string `xml:"Connection"`
	HostResource    []string `xml:"HostResource"`
	ElementName     string   `xml:"ElementName"`
	Caption         string   `xml:"Caption"`
	// vmw:Config key/value attributes (namespace-less match).
	Key   string `xml:"key,attr"`
	Value string `xml:"value,attr"`
}

var unitsRE = regexp.MustCompile(`^byte\s*(?:\*\s*(\d+)\s*\^\s*(\d+))?$`)

// units returns the multiplier of a DSP0004 annex C.1 programmatic unit
// such as "byte * 2^20", or of the older "MegaBytes" names.
func units(s string) (int64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch s {
	case "", "byte", "bytes":
		return 1, nil
	case "kilobytes", "kb":
		return 1 << 10, nil
	case "megabytes", "mb":
		return 1 << 20, nil
	case "gigabytes", "gb":
		return 1 << 30, nil
	case "terabytes", "tb":
		return 1 << 40, nil
	}
	m := unitsRE.FindStringSubmatch(s)
	if m == nil || m[1] == "" {
		if m != nil {
			return 1, nil
		}
		return 0, fmt.Errorf("%w: allocation units %q", vmimport.ErrBadConfig, s)
	}
	base, err1 := strconv.ParseInt(m[1], 10, 64)
	exp, err2 := strconv.ParseInt(m[2], 10, 64)
	if err1 != nil || err2 != nil || base < 2 || exp > 62 {
		return 0, fmt.Errorf("%w: allocation units %q", vmimport.ErrBadConfig, s)
	}
	v := int64(1)
	for range exp {
		if v > math.MaxInt64/base {
			return 0, fmt.Errorf("%w: allocation units %q overflow", vmimport.ErrBadConfig, s)
		}
		v *= base
	}
	return v, nil
}

// scaled is quantity q in units u, in bytes.
func scaled(q, u string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(q), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: quantity %q", vmimport.ErrBadConfig, q)
	}
	m, err := units(u)
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt64/m {
		return 0, fmt.Errorf("%w: %s %s overflows", vmimport.ErrBadConfig, q, u)
	}
	return n * m, nil
}

// Parse reads a descriptor. Each disk's Chain names files by their href in
// the package (relative to the .ovf's folder), base first.
func Parse(text []byte) (*vmimport.VM, error) {
	if len(text) > vmimport.MaxFileSize {
		return nil, fmt.Errorf("%w: descriptor of %d bytes", vmimport.ErrBadConfig, len(text))
	}
	var env envelope
	if err := xml.Unmarshal(text, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", vmimport.ErrBadConfig, err)
	}
	vs := env.System
	vm := &vmimport.VM{Name: vs.Name, Firmware: vmimport.FirmwareBIOS}
	if vm.Name == "" {
		vm.Name = vs.ID
	}
	vm.OS = vs.OS.Type
	if vm.OS == "" {
		vm.OS = vs.OS.Description
	}
	if vm.OS == "" {
		vm.OS = vs.VBox.OSType
	}
	if strings.HasPrefix(strings.ToLower(vs.VBox.Hardware.Firmware.Type), "efi") {
		vm.Firmware = vmimport.FirmwareUEFI
	}
	files := map[string]string{}
	for _, f := range env.Files {
		switch f.Compression {
		case "", "identity":
		case "gzip":
			if vm.Gzip == nil {
				vm.Gzip = map[string]bool{}
			}
			vm.Gzip[f.Href] = true
		default:
			return nil, fmt.Errorf("%w: file %q uses %s compression (OVF knows identity and gzip)", vmimport.ErrBadConfig, f.Href, f.Compression)
		}
		if f.ChunkSize != "" {
			return nil, fmt.Errorf("%w: file %q is chunked", vmimport.ErrBadConfig, f.Href)
		}
		files[f.ID] = f.Href
	}
	disks, order, err := diskSection(&env, files)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, hw := range vs.Hardware {
		for _, it := range hw.Items {
			if err := hardware(vm, it, disks, used); err != nil {
				return nil, err
			}
		}
	}
	// Disks no item attaches still hold data: keep them, after the others.
	// A disk that is another's parent is part of that disk's chain.
	parents := map[string]bool{}
	for _, d := range disks {
		parents[d.parent] = true
	}
	for _, id := range order {
		if !used[id] && !parents[id] {
			if err := attach(vm, disks, id, "ovf:/disk/"+id); err != nil {
				return nil, err
			}
		}
	}
	if vm.Name == "" {
		return nil, fmt.Errorf("%w: no VirtualSystem", vmimport.ErrBadConfig)
	}
	systemUUID(vm, &env)
	if err := vm.Check(); err != nil {
		return nil, err
	}
	return vm, nil
}

// disk is a DiskSection entry.
type disk struct {
	file     string
	capacity int64
	parent   string
}

func diskSection(env *envelope, files map[string]string) (map[string]disk, []string, error) {
	disks := map[string]disk{}
	var order []string
	for _, d := range env.Disks {
		if _, dup := disks[d.DiskID]; dup || d.DiskID == "" {
			return nil, nil, fmt.Errorf("%w: disk id %q missing or repeated", vmimport.ErrBadConfig, d.DiskID)
		}
		c, err := scaled(d.Capacity, d.CapacityUnits)
		if err != nil {
			return nil, nil, fmt.Errorf("disk %s capacity: %w", d.DiskID, err)
		}
		href := ""
		if d.FileRef != "" {
			var ok bool
			if href, ok = files[d.FileRef]; !ok {
				return nil, nil, fmt.Errorf("%w: disk %s names file %q, which References lacks", vmimport.ErrBadConfig, d.DiskID, d.FileRef)
			}
		}
		disks[d.DiskID] = disk{file: href, capacity: c, parent: d.ParentRef}
		order = append(order, d.DiskID)
	}
	return disks, order, nil
}

// attach adds disk id, with its chain of parentRef disks, to vm.
func attach(vm *vmimport.VM, disks map[string]disk, id, source string) error {
	var chain []string
	capacity := int64(0)
	for cur, n := id, 0; cur != ""; cur, n = disks[cur].parent, n+1 {
		d, ok := disks[cur]
		if !ok {
			return fmt.Errorf("%w: disk %s has parent %q, which DiskSection lacks", vmimport.ErrBadConfig, id, cur)
		}
		if n >= vmimport.MaxChain {
			return fmt.Errorf("%w: disk %s: parentRef chain longer than %d (a loop?)", vmimport.ErrBadConfig, id, vmimport.MaxChain)
		}
		if d.file == "" && d.parent != "" {
			return fmt.Errorf("%w: delta disk %s has no file", vmimport.ErrBadConfig, cur)
		}
		if d.file != "" {
			chain = append([]string{d.file}, chain...)
		}
		capacity = max(capacity, d.capacity)
	}
	if len(vm.Disks) >= vmimport.MaxDisks {
		return fmt.Errorf("%w: more than %d disks", vmimport.ErrBadConfig, vmimport.MaxDisks)
	}
	what := "a blank disk"
	if len(chain) > 0 {
		what = strings.Join(chain, " <- ")
	}
	vm.Mapped = append(vm.Mapped, fmt.Sprintf("%s (%s) -> virtio-blk vd%c", source, what, 'a'+rune(len(vm.Disks)%26)))
	vm.Disks = append(vm.Disks, vmimport.Disk{Source: source, Chain: chain, Capacity: capacity})
	return nil
}
