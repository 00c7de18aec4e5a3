package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/govisor/govisor/internal/hostcpu"
	"golang.org/x/sys/unix"
)

// DevicePath is the KVM device node.
const DevicePath = "/dev/kvm"

// Sentinel errors.
var (
	ErrNoKVM      = errors.New("kvm: /dev/kvm not found: load the kvm module (modprobe kvm_intel or kvm_amd) or enable virtualization in the BIOS")
	ErrPermission = errors.New("kvm: permission denied on /dev/kvm: run as root or add the user to the kvm group")
	ErrAPIVersion = errors.New("kvm: unsupported KVM API version (want 12)")
	ErrMissingCap = errors.New("kvm: required capability missing")
)

// System is an open /dev/kvm.
type System struct {
	fd       int
	mmapSize int
}

// Open opens /dev/kvm and checks the API version.
func Open() (*System, error) {
	fd, err := unix.Open(DevicePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENODEV):
			return nil, ErrNoKVM
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return nil, ErrPermission
		}
		return nil, fmt.Errorf("kvm: open %s: %w", DevicePath, err)
	}
	s := &System{fd: fd}
	v, err := ioctlVal(fd, reqGetAPIVersion, 0)
	if err != nil || v != 12 {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: got %d", ErrAPIVersion, v)
	}
	sz, err := ioctlVal(fd, reqGetVCPUMmapSize, 0)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("kvm: KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	s.mmapSize = int(sz)
	return s, nil
}

// Close closes /dev/kvm; VMs created from it stay usable.
func (s *System) Close() error { return unix.Close(s.fd) }

// CheckExtension returns KVM_CHECK_EXTENSION for capability c (0 = absent).
func (s *System) CheckExtension(c int) int {
	r, err := ioctlVal(s.fd, reqCheckExtension, uintptr(c))
	if err != nil {
		return 0
	}
	return int(r)
}

// Require returns an error naming the first capability in caps that is absent.
func (s *System) Require(caps map[string]int) error {
	for name, c := range caps {
		if s.CheckExtension(c) == 0 {
			return fmt.Errorf("%w: %s (this kernel's KVM is too old or limited)", ErrMissingCap, name)
		}
	}
	return nil
}

func (s *System) getCPUIDList(req uintptr, what string) ([]CPUIDEntry, error) {
	for n := 128; n <= 4096; n *= 2 {
		buf := make([]byte, 8+n*sizeofCPUIDEntry2)
		binary.LittleEndian.PutUint32(buf, uint32(n))
		_, err := ioctlBuf(s.fd, req, buf)
		if errors.Is(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("kvm: %s: %w", what, err)
		}
		return decodeCPUID(buf), nil
	}
	return nil, fmt.Errorf("kvm: %s: more than 4096 entries", what)
}

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID: the CPUID bits KVM can give a guest.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	return s.getCPUIDList(reqGetSupportedCPUID, "KVM_GET_SUPPORTED_CPUID")
}

// MSRIndexList returns KVM_GET_MSR_INDEX_LIST: the MSRs saved and restored with a vCPU.
func (s *System) MSRIndexList() ([]uint32, error) {
	for n := 256; n <= 16384; n *= 2 {
		buf := make([]byte, 4+4*n)
		binary.LittleEndian.PutUint32(buf, uint32(n))
		_, err := ioctlBuf(s.fd, reqGetMSRIndexList, buf)
		if errors.Is(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("kvm: KVM_GET_MSR_INDEX_LIST: %w", err)
		}
		cnt := int(binary.LittleEndian.Uint32(buf))
		out := make([]uint32, cnt)
		for i := range out {
			out[i] = binary.LittleEndian.Uint32(buf[4+4*i:])
		}
		return out, nil
	}
	return nil, errors.New("kvm: KVM_GET_MSR_INDEX_LIST: too many MSRs")
}

func decodeCPUID(buf []byte) []CPUIDEntry {
	n := int(binary.LittleEndian.Uint32(buf))
	out := make([]CPUIDEntry, n)
	for i := range out {
		b := buf[8+i*sizeofCPUIDEntry2:]
		out[i] = CPUIDEntry{
			Function: binary.LittleEndian.Uint32(b[0:]),
			Index:    binary.LittleEndian.Uint32(b[4:]),
			Flags:    binary.LittleEndian.Uint32(b[8:]),
			EAX:      binary.LittleEndian.Uint32(b[12:]),
			EBX:      binary.LittleEndian.Uint32(b[16:]),
			ECX:      binary.LittleEndian.Uint32(b[20:]),
			EDX:      binary.LittleEndian.Uint32(b[24:]),
		}
	}
	return out
}

func encodeCPUID(entries []CPUIDEntry) []byte {
	buf := make([]byte, 8+len(entries)*sizeofCPUIDEntry2)
	binary.LittleEndian.PutUint32(buf, uint32(len(entries)))
	for i, e := range entries {
		b := buf[8+i*sizeofCPUIDEntry2:]
		binary.LittleEndian.PutUint32(b[0:], e.Function)
		binary.LittleEndian.PutUint32(b[4:], e.Index)
		binary.LittleEndian.PutUint32(b[8:], e.Flags)
		binary.LittleEndian.PutUint32(b[12:], e.EAX)
		binary.LittleEndian.PutUint32(b[16:], e.EBX)
		binary.LittleEndian.PutUint32(b[20:], e.ECX)
		binary.LittleEndian.PutUint32(b[24:], e.EDX)
	}
	return buf
}

// Flavor tells hardware KVM from the kvm_pvm software KVM.
type Flavor string

// KVM flavors.
const (
	FlavorHardware Flavor = "hardware"
	FlavorPVM      Flavor = "pvm"
)

// DetectFlavor reports whether /dev/kvm is kvm_pvm (a software KVM whose
// CPL0 emulator needs a CPU template, see DESIGN.md) or hardware-assisted KVM.
func DetectFlavor() Flavor {
	if hostcpu.SoftwareKVM() {
		return FlavorPVM
	}
	return FlavorHardware
}
