// Package ova imports VMware/OVF appliances: it unpacks an OVA (a tar
// holding an OVF descriptor, an optional manifest and the disks), reads the
// OVF (DMTF DSP0243 "Open Virtualization Format Specification") for CPUs,
// memory, NICs and disks, checks the manifest digests, and converts each
// disk to qcow2.
package ova

import (
	"encoding/xml"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Sentinel errors of the ova package.
var (
	ErrBadOVF         = errors.New("ova: bad OVF descriptor")
	ErrBadArchive     = errors.New("ova: bad archive")
	ErrDigestMismatch = errors.New("ova: manifest digest mismatch")
)

// maxOVFSize caps the descriptor read into memory; real ones are tens of KiB.
const maxOVFSize = 16 << 20

// CIM ResourceType values used by OVF hardware items (DSP0243 section 9.5,
// CIM_ResourceAllocationSettingData).
const (
	resourceProcessor = 3
	resourceMemory    = 4
	resourceEthernet  = 10
	resourceDisk      = 17
)

// envelope mirrors the parts of an OVF descriptor govisor uses. Element and
// attribute names match any namespace, so ovf:, rasd: and OVF 2.0's
// epasd:/sasd: prefixes all parse.
type envelope struct {
	References struct {
		Files []struct {
			ID          string `xml:"id,attr"`
			Href        string `xml:"href,attr"`
			Size        string `xml:"size,attr"`
			Compression string `xml:"compression,attr"`
			ChunkSize   string `xml:"chunkSize,attr"`
		} `xml:"File"`
	} `xml:"References"`
	DiskSection struct {
		Disks []struct {
			DiskID        string `xml:"diskId,attr"`
			FileRef       string `xml:"fileRef,attr"`
			Capacity      string `xml:"capacity,attr"`
			CapacityUnits string `xml:"capacityAllocationUnits,attr"`
			Format        string `xml:"format,attr"`
		} `xml:"Disk"`
	} `xml:"DiskSection"`
	VirtualSystem struct {
		ID       string `xml:"id,attr"`
		Name     string `xml:"Name"`
		OSection struct {
			ID          string `xml:"id,attr"`
			OSType      string `xml:"osType,attr"`
			Description string `xml:"Description"`
		} `xml:"OperatingSystemSection"`
		Hardware []struct {
			Items []item `xml:",any"`
		} `xml:"VirtualHardwareSection"`
	} `xml:"VirtualSystem"`
}

// item is a hardware item: Item, EthernetPortItem or StorageItem.
type item struct {
	XMLName         xml.Name
	ResourceType    string   `xml:"ResourceType"`
	ResourceSubType string   `xml:"ResourceSubType"`
	VirtualQuantity string   `xml:"VirtualQuantity"`
	AllocationUnits string   `xml:"AllocationUnits"`
	Connection      []string `xml:"Connection"`
	HostResource    []string `xml:"HostResource"`
	ElementName     string   `xml:"ElementName"`
}

// NIC is a network interface of the imported VM.
type NIC struct {
	Model   string `json:"model" yaml:"model"`
	Network string `json:"network,omitempty" yaml:"network,omitempty"`
}

// VMDefinition is what an OVF describes, in govisor terms.
type VMDefinition struct {
	Name      string   `json:"name" yaml:"name"`
	OS        string   `json:"os,omitempty" yaml:"os,omitempty"`
	CPUs      int      `json:"cpus" yaml:"cpus"`
	MemoryMiB int64    `json:"memoryMiB" yaml:"memoryMiB"`
	Disks     []string `json:"disks" yaml:"disks"`
	NICs      []NIC    `json:"nics,omitempty" yaml:"nics,omitempty"`
}

// diskRef is a disk the OVF attaches: the archive file holding it and its
// capacity in bytes.
type diskRef struct {
	ID       string
	File     string
	Capacity int64
	Format   string
}

// descriptor is a parsed OVF: the VM and the disks in attachment order.
type descriptor struct {
	VM    VMDefinition
	Disks []diskRef
}

var unitsRE = regexp.MustCompile(`^byte\s*(?:\*\s*(\d+)\s*\^\s*(\d+))?$`)

// allocationUnits returns the multiplier of a DSP0004 programmatic unit
// such as "byte * 2^20", or the older "MegaBytes" style names.
func allocationUnits(s string) (int64, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
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
	m := unitsRE.FindStringSubmatch(strings.ToLower(s))
	if m == nil {
		return 0, fmt.Errorf("%w: allocation units %q", ErrBadOVF, s)
	}
	if m[1] == "" {
		return 1, nil
	}
	base, err1 := strconv.ParseInt(m[1], 10, 64)
	exp, err2 := strconv.ParseInt(m[2], 10, 64)
	if err1 != nil || err2 != nil || base < 2 || exp > 62 {
		return 0, fmt.Errorf("%w: allocation units %q", ErrBadOVF, s)
	}
	v := int64(1)
	for range exp {
		if v > math.MaxInt64/base {
			return 0, fmt.Errorf("%w: allocation units %q overflow", ErrBadOVF, s)
		}
		v *= base
	}
	return v, nil
}

// scaled multiplies quantity q by units u, refusing overflow.
func scaled(q, u string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(q), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: quantity %q", ErrBadOVF, q)
	}
	m, err := allocationUnits(u)
	if err != nil {
		return 0, err
	}
	if m != 0 && n > math.MaxInt64/m {
		return 0, fmt.Errorf("%w: %s %s overflows", ErrBadOVF, q, u)
	}
	return n * m, nil
}

// parseOVF reads an OVF descriptor.
func parseOVF(text []byte) (*descriptor, error) {
	var env envelope
	if err := xml.Unmarshal(text, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadOVF, err)
	}
	vs := env.VirtualSystem
	d := &descriptor{VM: VMDefinition{Name: vs.Name}}
	if d.VM.Name == "" {
		d.VM.Name = vs.ID
	}
	d.VM.OS = vs.OSection.OSType
	if d.VM.OS == "" {
		d.VM.OS = vs.OSection.Description
	}
	files := map[string]string{}
	for _, f := range env.References.Files {
		if f.Compression != "" && f.Compression != "identity" {
			return nil, fmt.Errorf("%w: file %q uses %s compression", ErrBadOVF, f.Href, f.Compression)
		}
		if f.ChunkSize != "" {
			return nil, fmt.Errorf("%w: file %q is chunked", ErrBadOVF, f.Href)
		}
		files[f.ID] = f.Href
	}
	disks := map[string]diskRef{}
	var diskOrder []string
	for _, dk := range env.DiskSection.Disks {
		href, ok := files[dk.FileRef]
		if !ok {
			// A disk without a file is a blank disk of that capacity.
			href = ""
		}
		units := dk.CapacityUnits
		capb, err := scaled(dk.Capacity, units)
		if err != nil {
			return nil, fmt.Errorf("disk %s capacity: %w", dk.DiskID, err)
		}
		disks[dk.DiskID] = diskRef{ID: dk.DiskID, File: href, Capacity: capb, Format: dk.Format}
		diskOrder = append(diskOrder, dk.DiskID)
	}
	used := map[string]bool{}
	for _, hw := range vs.Hardware {
		for _, it := range hw.Items {
			rt, _ := strconv.Atoi(strings.TrimSpace(it.ResourceType))
			switch rt {
			case resourceProcessor:
				n, err := strconv.Atoi(strings.TrimSpace(it.VirtualQuantity))
				if err != nil || n < 1 || n > 1024 {
					return nil, fmt.Errorf("%w: %q CPUs", ErrBadOVF, it.VirtualQuantity)
				}
				d.VM.CPUs = n
			case resourceMemory:
				b, err := scaled(it.VirtualQuantity, it.AllocationUnits)
				if err != nil {
					return nil, fmt.Errorf("memory: %w", err)
				}
				d.VM.MemoryMiB = b >> 20
			case resourceEthernet:
				nic := NIC{Model: strings.ToLower(strings.TrimSpace(it.ResourceSubType))}
				if len(it.Connection) > 0 {
					nic.Network = strings.TrimSpace(it.Connection[0])
				}
				if nic.Model == "" {
					nic.Model = "e1000"
				}
				d.VM.NICs = append(d.VM.NICs, nic)
			case resourceDisk:
				for _, hr := range it.HostResource {
					// "ovf:/disk/<diskId>" (OVF 1.x) or "/disk/<diskId>".
					id := hr[strings.LastIndex(hr, "/")+1:]
					if dk, ok := disks[id]; ok && !used[id] {
						used[id] = true
						d.Disks = append(d.Disks, dk)
					}
				}
			}
		}
	}
	// Disks the hardware section does not attach still hold data: keep them.
	for _, id := range diskOrder {
		if !used[id] {
			d.Disks = append(d.Disks, disks[id])
		}
	}
	if d.VM.Name == "" {
		return nil, fmt.Errorf("%w: no VirtualSystem", ErrBadOVF)
	}
	return d, nil
}
