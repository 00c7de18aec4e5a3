// Package ova imports VMware/OVF appliances: it unpacks an OVA (a tar
// holding an OVF descriptor, an optional manifest and the disks), checks
// the manifest digests, reads the OVF (DMTF DSP0243 "Open Virtualization
// Format Specification") with vmimport/ovf for CPUs, memory, NICs and
// disks, and converts each disk to qcow2.
package ova

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/govisor/govisor/internal/vmimport"
	"github.com/govisor/govisor/internal/vmimport/ovf"
)

// Sentinel errors of the ova package.
var (
	// ErrBadOVF is the error of a descriptor govisor cannot use:
	// vmimport/ovf reads it, so its errors are vmimport.ErrBadConfig.
	ErrBadOVF         = vmimport.ErrBadConfig
	ErrBadArchive     = errors.New("ova: bad archive")
	ErrDigestMismatch = errors.New("ova: manifest digest mismatch")
)

// maxOVFSize caps the descriptor read into memory (real ones are tens of
// KiB): what vmimport/ovf parses at most.
const maxOVFSize = vmimport.MaxFileSize

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

// diskRef is a disk the OVF attaches: the archive file holding it ("" for
// a blank disk) and its capacity in bytes.
type diskRef struct {
	ID       string
	File     string
	Capacity int64
}

// descriptor is a parsed OVF: the VM and the disks in attachment order.
type descriptor struct {
	VM    VMDefinition
	Disks []diskRef
}

// parseOVF reads an OVF descriptor with vmimport/ovf and keeps what Import
// carries out: a disk is one file converted alone (or a blank one), so a
// file stored compressed or a delta disk over a parent (parentRef) is
// refused here; govisor import ova converts both.
func parseOVF(text []byte) (*descriptor, error) {
	vm, err := ovf.Parse(text)
	if err != nil {
		return nil, err
	}
	if len(vm.Gzip) > 0 {
		return nil, fmt.Errorf("%w: file %q uses gzip compression (govisor import ova expands it)",
			ErrBadOVF, slices.Sorted(maps.Keys(vm.Gzip))[0])
	}
	d := &descriptor{VM: VMDefinition{Name: vm.Name, OS: vm.OS, CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB}}
	for _, n := range vm.NICs {
		nic := NIC{Model: n.Model, Network: n.Network}
		if nic.Model == "" {
			nic.Model = "e1000"
		}
		d.VM.NICs = append(d.VM.NICs, nic)
	}
	for _, dk := range vm.Disks {
		id := strings.TrimPrefix(dk.Source, "ovf:/disk/")
		if len(dk.Chain) > 1 {
			return nil, fmt.Errorf("%w: disk %s is a delta disk (%s): import it with govisor import ova",
				ErrBadOVF, id, strings.Join(dk.Chain, " <- "))
		}
		ref := diskRef{ID: id, Capacity: dk.Capacity}
		if len(dk.Chain) == 1 {
			ref.File = dk.Chain[0]
		}
		d.Disks = append(d.Disks, ref)
	}
	return d, nil
}
