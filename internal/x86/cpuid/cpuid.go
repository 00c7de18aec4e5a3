// Package cpuid builds a guest's CPUID from the list KVM supports
// (KVM_GET_SUPPORTED_CPUID) through a CPU template, and fills in the
// topology of the VM and each vCPU's APIC ID.
//
// Leaf layouts follow the Intel SDM vol. 2A ("CPUID—CPU Identification")
// and the AMD APM vol. 3 (appendix E, "Obtaining Processor Information").
package cpuid

import (
	"errors"
	"fmt"
	"math/bits"
)

// FlagSignificantIndex marks an entry whose Index (ECX input) selects a
// sub-leaf, as KVM_CPUID_FLAG_SIGNIFCANT_INDEX in struct kvm_cpuid_entry2.
const FlagSignificantIndex = 1

// MaxEntries is the most entries KVM_SET_CPUID2 accepts (KVM_MAX_CPUID_ENTRIES).
const MaxEntries = 256

// MaxCPUs is the largest vCPU count: APIC IDs are 8 bits in leaf 1 and the
// xAPIC, 0xFF is the broadcast ID, and the I/O APIC takes ID nCPUs.
const MaxCPUs = 254

// Entry is one CPUID leaf/sub-leaf: the inputs Function (EAX) and Index
// (ECX), KVM's flags, and the four outputs.
type Entry struct {
	Function, Index, Flags uint32
	EAX, EBX, ECX, EDX     uint32
}

// Errors returned by Build.
var (
	ErrBadCPUCount    = errors.New("cpuid: unsupported number of vCPUs")
	ErrNoLeaf         = errors.New("cpuid: supported list lacks a required leaf")
	ErrTooManyEntries = errors.New("cpuid: too many entries")
)

// Leaves Build and ForVCPU rewrite.
const (
	leafFeatures      = 0x1
	leafCacheParams   = 0x4 // Intel deterministic cache parameters
	leafTopology      = 0xB // extended topology enumeration
	leafTopologyV2    = 0x1F
	leafExtAddrSizes  = 0x80000008
	leafAMDCacheProps = 0x8000001D // same EAX layout as leaf 4
	leafAMDExtAPICID  = 0x8000001E
)

// Find returns the entry for function and index (index is ignored for
// entries without FlagSignificantIndex).
func Find(entries []Entry, function, index uint32) (Entry, bool) {
	for _, e := range entries {
		if e.Function == function && (e.Flags&FlagSignificantIndex == 0 || e.Index == index) {
			return e, true
		}
	}
	return Entry{}, false
}

// Build returns the VM-wide CPUID for a VM of nCPUs vCPUs: supported with
// t applied and the topology of one package of nCPUs single-threaded
// cores. APIC IDs are left 0; ForVCPU sets them. supported is not changed.
func Build(supported []Entry, t Template, nCPUs int) ([]Entry, error) {
	if nCPUs < 1 || nCPUs > MaxCPUs {
		return nil, fmt.Errorf("%w: %d (want 1..%d)", ErrBadCPUCount, nCPUs, MaxCPUs)
	}
	if len(supported) > MaxEntries {
		return nil, fmt.Errorf("%w: %d supported entries, KVM takes %d", ErrTooManyEntries, len(supported), MaxEntries)
	}
	if _, ok := Find(supported, leafFeatures, 0); !ok {
		return nil, fmt.Errorf("%w: leaf 1", ErrNoLeaf)
	}
	// Leaves 0xB and 0x1F are regenerated whole, where they first appear:
	// KVM reports the host's levels, which say nothing about the VM.
	out := make([]Entry, 0, len(supported)+4)
	regenerated := map[uint32]bool{}
	for _, e := range supported {
		if e.Function != leafTopology && e.Function != leafTopologyV2 {
			out = append(out, e)
			continue
		}
		if !regenerated[e.Function] {
			regenerated[e.Function] = true
			out = append(out, topologyLeaf(e.Function, nCPUs)...)
		}
	}
	if len(out) > MaxEntries {
		return nil, fmt.Errorf("%w: %d", ErrTooManyEntries, len(out))
	}
	if err := t.apply(out); err != nil {
		return nil, err
	}
	for i := range out {
		setTopology(&out[i], nCPUs)
	}
	return out, nil
}

// topologyLeaf returns the sub-leaves of leaf 0xB or 0x1F for one package
// of nCPUs cores with one thread each (Intel SDM, CPUID leaf 0BH): EAX[4:0]
// is the shift of the x2APIC ID to the next level, EBX[15:0] the logical
// processors at this level, ECX[7:0] the level number and ECX[15:8] its
// type (1 = SMT, 2 = core, 0 = invalid, ending the list). EDX, the x2APIC
// ID, is set per vCPU.
func topologyLeaf(fn uint32, nCPUs int) []Entry {
	const typeSMT, typeCore = 1, 2
	return []Entry{
		{Function: fn, Index: 0, Flags: FlagSignificantIndex, EAX: 0, EBX: 1, ECX: 0 | typeSMT<<8},
		{Function: fn, Index: 1, Flags: FlagSignificantIndex, EAX: apicIDShift(nCPUs), EBX: uint32(nCPUs), ECX: 1 | typeCore<<8},
		{Function: fn, Index: 2, Flags: FlagSignificantIndex, ECX: 2},
	}
}

// apicIDShift returns the number of APIC ID bits that number nCPUs cores.
func apicIDShift(nCPUs int) uint32 {
	return uint32(bits.Len(uint(nCPUs - 1)))
}

// setTopology rewrites the count fields of e for nCPUs single-threaded cores.
func setTopology(e *Entry, nCPUs int) {
	n := uint32(nCPUs)
	switch e.Function {
	case leafFeatures:
		// EBX[31:24] initial APIC ID (ForVCPU), [23:16] addressable
		// logical processor IDs, [15:8] CLFLUSH line size in quadwords,
		// [7:0] brand index. EDX[28] HTT: more than one logical processor.
		clflush := e.EBX >> 8 & 0xFF
		if clflush == 0 {
			clflush = 64 / 8
		}
		e.EBX = e.EBX&0xFF | clflush<<8 | min(n, 0xFF)<<16
		const htt = 1 << 28
		if nCPUs > 1 {
			e.EDX |= htt
		} else {
			e.EDX &^= htt
		}
	case leafCacheParams, leafAMDCacheProps:
		// EAX[4:0] cache type (0: no more caches), [7:5] level, [25:14]
		// logical processors sharing the cache minus 1, and on Intel
		// [31:26] addressable core IDs in the package minus 1.
		if e.EAX&0x1F == 0 {
			return
		}
		sharing := uint32(0) // L1 and L2 are per core, one thread per core
		if level := e.EAX >> 5 & 7; level >= 3 {
			sharing = n - 1
		}
		e.EAX = e.EAX&^(0xFFF<<14) | sharing<<14
		if e.Function == leafCacheParams {
			e.EAX = e.EAX&^(0x3F<<26) | min(n-1, 0x3F)<<26
		}
	case leafExtAddrSizes:
		// ECX[7:0] NC: cores in the package minus 1; [15:12] ApicIdSize:
		// APIC ID bits that number them (AMD APM, CPUID Fn8000_0008).
		e.ECX = e.ECX&^0xF0FF | apicIDShift(nCPUs)<<12 | (n - 1)
	case leafAMDExtAPICID:
		// EBX[15:8] threads per compute unit minus 1 (0), [7:0] compute
		// unit ID (ForVCPU); ECX[10:8] nodes per package minus 1 (0),
		// [7:0] node ID (0); EAX is the extended APIC ID (ForVCPU).
		e.EAX, e.EBX, e.ECX = 0, 0, 0
	}
}

// ForVCPU returns a copy of entries (as Build returned them) for the vCPU
// with APIC ID id: leaf 1 EBX[31:24] and the x2APIC IDs of leaves 0xB and
// 0x1F (EDX) and AMD's 0x8000001E (EAX, and the compute unit in EBX[7:0]).
func ForVCPU(entries []Entry, id int) []Entry {
	out := make([]Entry, len(entries))
	copy(out, entries)
	x2 := uint32(id)
	for i := range out {
		e := &out[i]
		switch e.Function {
		case leafFeatures:
			e.EBX = e.EBX&0x00FFFFFF | (x2&0xFF)<<24
		case leafTopology, leafTopologyV2:
			e.EDX = x2
		case leafAMDExtAPICID:
			e.EAX = x2
			e.EBX = e.EBX&^0xFF | x2&0xFF
		}
	}
	return out
}
