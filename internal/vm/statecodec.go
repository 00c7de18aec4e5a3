package vm

import (
	"fmt"

	"github.com/govisor/govisor/internal/devmgr"
	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/snapshot"
)

// The machine state's binary encoding (StateVersion 4, and 3 for older
// snapshots: encodeVirtio): every type has an encode and a decode
// function side by side that write and read the same
// fields in the same order, little-endian, with slices length-prefixed and
// every length checked against a maximum and the input left. A field added
// to any of these types must be added to both functions and StateVersion
// bumped; TestStateCodecCoversEveryField fails until it is.

// Bounds on the counts and sizes in a machine state: generous, but small
// enough that a hostile state cannot make the decoder allocate much.
const (
	maxIRQChips    = 8
	maxVirtio      = 32 // PCI slots on bus 0
	maxDisks       = 64
	maxNets        = 64
	maxPath        = 4096
	maxName        = 256
	maxQueueCount  = 1 << 16 // block queues
	minVirtioBytes = devmgr.MinStateBytes
	minDiskBytes   = 4 + 1 + 1 + 4 + 4 + 8
	minNetBytes    = 4 + 4
	maxStateValue  = 1 << 16
)

// ErrStateFormat means a saved or migrated machine state is not in this
// govisor's encoding (an older or newer govisor made it); device packages
// return it too (it is snapshot.ErrStateFormat).
var ErrStateFormat = snapshot.ErrStateFormat

// EncodeState returns the binary encoding of st, as snapshots store it.
func EncodeState(st *MachineState) []byte {
	e := snapshot.NewEncoder(make([]byte, 0, 8192*len(st.VCPUs)+4096))
	encodeMachine(e, st)
	return e.Bytes()
}

// DecodeState decodes what EncodeState made; the error names the field
// that is corrupt.
func DecodeState(p []byte) (*MachineState, error) {
	d := snapshot.NewDecoder(p)
	st := new(MachineState)
	if err := decodeMachine(d, st); err != nil {
		return nil, fmt.Errorf("vm: decode machine state: %w", err)
	}
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("vm: decode machine state: %w", err)
	}
	return st, nil
}

func encodeMachine(e *snapshot.Encoder, st *MachineState) {
	e.Int(st.Version)
	e.Len(len(st.VCPUs))
	for i := range st.VCPUs {
		encodeVCPU(e, &st.VCPUs[i])
	}
	e.Len(len(st.IRQChips))
	for i := range st.IRQChips {
		encodeIRQChip(e, &st.IRQChips[i])
	}
	encodePIT(e, &st.PIT)
	encodeClock(e, &st.Clock)
	// The legacy devices encode their own state, in this order.
	st.UART.Encode(e)
	st.I8042.Encode(e)
	st.RTC.Encode(e)
	st.PM.Encode(e)
	st.PCI.Encode(e)
	e.Len(len(st.Virtio))
	for i := range st.Virtio {
		encodeVirtio(e, &st.Virtio[i], st.Version)
	}
	encodeHotplug(e, &st.Hotplug, st.Version)
	if st.Version > stateVersionV4 {
		encodeFirmware(e, st.Firmware)
	}
}

func decodeMachine(d *snapshot.Decoder, st *MachineState) error {
	st.Version = d.Int("Version", maxStateValue)
	var err error
	if st.VCPUs, err = decodeVCPUs(d, d.Len("VCPUs", MaxCPUs, minVCPUBytes)); err != nil {
		return err
	}
	if n := d.Len("IRQChips", maxIRQChips, irqChipBytes); n > 0 {
		st.IRQChips = make([]kvm.IRQChip, n)
		for i := range st.IRQChips {
			decodeIRQChip(d, &st.IRQChips[i])
		}
	}
	decodePIT(d, &st.PIT)
	decodeClock(d, &st.Clock)
	for _, dec := range [...]func(*snapshot.Decoder) error{st.UART.Decode, st.I8042.Decode, st.RTC.Decode, st.PM.Decode, st.PCI.Decode} {
		if err := dec(d); err != nil {
			return err
		}
	}
	if n := d.Len("Virtio", maxVirtio, minVirtioBytes); n > 0 {
		st.Virtio = make([]VirtioState, n)
		for i := range st.Virtio {
			if err := decodeVirtio(d, &st.Virtio[i], st.Version); err != nil {
				return fmt.Errorf("virtio device %d: %w", i, err)
			}
		}
	}
	if err := decodeHotplug(d, &st.Hotplug, st.Version); err != nil {
		return fmt.Errorf("hotplug: %w", err)
	}
	if st.Version > stateVersionV4 {
		st.Firmware = decodeFirmware(d)
	}
	return d.Err()
}

// The virtio-pci functions' state is the device manager's encoding
// (devmgr.Encode: the transport, then the device's state under its kind);
// StateVersion 3 had a presence flag per device kind instead, which
// devmgr.DecodeV3 still reads (and EncodeV3 writes, so that what decodes
// re-encodes identically).

func encodeVirtio(e *snapshot.Encoder, v *VirtioState, version int) {
	if version == stateVersionV3 {
		devmgr.EncodeV3(e, v)
		return
	}
	devmgr.Encode(e, v)
}

func decodeVirtio(d *snapshot.Decoder, v *VirtioState, version int) error {
	if version == stateVersionV3 {
		return devmgr.DecodeV3(d, v)
	}
	return devmgr.Decode(d, v)
}

// migrationMagic starts the device state a migration source sends, so that
// a destination tells an older or newer govisor's state (gob, before
// version 2) from a corrupt one.
const migrationMagic = "GVMIGST\x00"

// migrationStateVersion is the version of the migration's device state;
// a destination refuses others (both hosts must run the same encoding).
// Version 3 carries hot-plugged disks (StateVersion 3); version 4 the
// device states by kind (StateVersion 4); version 5 the firmware's state.
const migrationStateVersion = 5

// encodeMigrationState encodes what the source sends at the handover into
// buf (reused between migrations, may be nil).
func encodeMigrationState(buf []byte, ms *migrationState) []byte {
	e := snapshot.NewEncoder(buf[:0])
	e.Raw([]byte(migrationMagic))
	e.U32(migrationStateVersion)
	encodeConfig(e, &ms.Config)
	encodeMachine(e, &ms.Machine)
	return e.Bytes()
}

// decodeMigrationState decodes a migration's device state.
func decodeMigrationState(p []byte, ms *migrationState) error {
	if len(p) < len(migrationMagic)+4 || string(p[:len(migrationMagic)]) != migrationMagic {
		return fmt.Errorf("%w: the source's device state is not in this govisor's encoding (version %d): run the same govisor version on both hosts",
			ErrStateFormat, migrationStateVersion)
	}
	d := snapshot.NewDecoder(p[len(migrationMagic):])
	if v := d.U32(); v != migrationStateVersion {
		return fmt.Errorf("%w: the source sent device state version %d, this govisor reads version %d: run the same govisor version on both hosts",
			ErrStateFormat, v, migrationStateVersion)
	}
	if err := decodeConfig(d, &ms.Config); err != nil {
		return fmt.Errorf("vm: decode migrated config: %w", err)
	}
	if err := decodeMachine(d, &ms.Machine); err != nil {
		return fmt.Errorf("vm: decode migrated machine state: %w", err)
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("vm: decode migrated machine state: %w", err)
	}
	return nil
}

// EncodeConfig returns the binary encoding of a saved machine description.
func EncodeConfig(c *SavedConfig) []byte {
	e := snapshot.NewEncoder(nil)
	encodeConfig(e, c)
	return e.Bytes()
}

// DecodeConfig decodes what EncodeConfig made.
func DecodeConfig(p []byte) (*SavedConfig, error) {
	d := snapshot.NewDecoder(p)
	c := new(SavedConfig)
	if err := decodeConfig(d, c); err != nil {
		return nil, fmt.Errorf("vm: decode saved config: %w", err)
	}
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("vm: decode saved config: %w", err)
	}
	return c, nil
}
