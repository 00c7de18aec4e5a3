package vm

import (
	"bytes"
	"fmt"
	"os"

	"github.com/govisor/govisor/internal/firmware/fwcfg"
	"github.com/govisor/govisor/internal/firmware/pflash"
	"github.com/govisor/govisor/internal/snapshot"
)

// FirmwareState is what a machine booted through firmware holds beyond
// RAM and devices: the firmware image the guest runs (QEMU migrates its
// ROM and flash contents too, as RAM blocks), the fw_cfg registers, and
// for UEFI the variable bank, its contents and command state. With it a
// firmware machine is saved, restored and migrated whole: the guest's
// firmware keeps running, and reboots, with what it had.
type FirmwareState struct {
	Image []byte
	FwCfg fwcfg.State
	// Vars is the UEFI variable bank's contents; nil for BIOS.
	Vars  []byte
	Flash pflash.State
}

// maxFirmwareState bounds the image and the variables a state may carry.
const maxFirmwareState = 64 << 20

// saveFirmware returns the firmware state, or nil for a kernel boot.
func (m *Machine) saveFirmware() *FirmwareState {
	if len(m.cfg.Firmware) == 0 {
		return nil
	}
	fs := &FirmwareState{Image: bytes.Clone(m.rom), FwCfg: m.fwcfg.SaveState()}
	if m.varsFlash != nil {
		fs.Vars = bytes.Clone(m.vars)
		fs.Flash = m.varsFlash.SaveState()
	}
	return fs
}

// restoreFirmware loads fs into a machine built with the same kind of
// firmware: the image into its ROM mapping (the destination's own
// firmware file may be another build), the variables into its variable
// file, which then holds the source's.
func (m *Machine) restoreFirmware(fs *FirmwareState) error {
	switch {
	case fs == nil && len(m.cfg.Firmware) == 0:
		return nil
	case fs == nil:
		return fmt.Errorf("vm: the saved machine booted a kernel, this one is configured with firmware")
	case len(m.cfg.Firmware) == 0:
		return fmt.Errorf("vm: the saved machine booted through firmware: configure this one with firmware too")
	case len(fs.Image) != len(m.rom):
		return fmt.Errorf("vm: the saved machine's firmware image has %d bytes, this one's %d: give the same firmware build", len(fs.Image), len(m.rom))
	case (fs.Vars != nil) != (m.varsFlash != nil):
		return fmt.Errorf("vm: the saved machine and this one differ in UEFI (saved with variables: %v)", fs.Vars != nil)
	case fs.Vars != nil && len(fs.Vars) != len(m.vars):
		return fmt.Errorf("vm: the saved UEFI variable store has %d bytes, this one's file %d", len(fs.Vars), len(m.vars))
	}
	copy(m.rom, fs.Image)
	m.fwcfg.RestoreState(fs.FwCfg)
	if m.varsFlash != nil {
		copy(m.vars, fs.Vars)
		m.varsFlash.RestoreState(fs.Flash)
		if err := m.syncVars(); err != nil {
			return err
		}
	}
	return nil
}

// withSavedFirmware configures a machine being rebuilt from st with the
// firmware st ran: its image, and for UEFI the variable file vars (made
// the saved store's size) or, without one, a scratch file. done closes
// what it opened (the machine's mapping keeps the pages).
func withSavedFirmware(cfg *Config, st *MachineState, vars *os.File) (done func(), err error) {
	done = func() {}
	fs := st.Firmware
	if fs == nil {
		return done, nil
	}
	cfg.Firmware = fs.Image
	if fs.Vars == nil {
		return done, nil
	}
	if vars == nil {
		if vars, err = scratchVars(fs.Vars); err != nil {
			return done, err
		}
		done = func() { vars.Close() }
	} else if err := vars.Truncate(int64(len(fs.Vars))); err != nil {
		return done, fmt.Errorf("vm: UEFI variable file: %w", err)
	}
	cfg.FirmwareVars = vars
	return done, nil
}

// scratchVars returns an unlinked file holding vars, for a UEFI machine
// restored without a variable file of its own (its variables then last
// as long as the process).
func scratchVars(vars []byte) (*os.File, error) {
	f, err := os.CreateTemp("", "govisor-vars-")
	if err != nil {
		return nil, fmt.Errorf("vm: scratch UEFI variable file: %w", err)
	}
	os.Remove(f.Name())
	if _, err := f.Write(vars); err != nil {
		f.Close()
		return nil, fmt.Errorf("vm: scratch UEFI variable file: %w", err)
	}
	return f, nil
}

func encodeFirmware(e *snapshot.Encoder, fs *FirmwareState) {
	e.Bool(fs != nil)
	if fs == nil {
		return
	}
	e.Blob(fs.Image)
	e.U16(fs.FwCfg.Selector)
	e.U32(fs.FwCfg.Offset)
	e.U32(fs.FwCfg.DMAHigh)
	e.Bool(fs.Vars != nil)
	if fs.Vars != nil {
		e.Blob(fs.Vars)
	}
	e.U8(fs.Flash.Cmd)
	e.U8(fs.Flash.Cycle)
	e.U8(fs.Flash.Status)
}

func decodeFirmware(d *snapshot.Decoder) *FirmwareState {
	if !d.Bool() {
		return nil
	}
	fs := &FirmwareState{Image: d.Blob("Firmware.Image", maxFirmwareState)}
	fs.FwCfg.Selector = d.U16()
	fs.FwCfg.Offset = d.U32()
	fs.FwCfg.DMAHigh = d.U32()
	if d.Bool() {
		fs.Vars = d.Blob("Firmware.Vars", maxFirmwareState)
		if fs.Vars == nil {
			fs.Vars = []byte{}
		}
	}
	fs.Flash.Cmd = d.U8()
	fs.Flash.Cycle = d.U8()
	fs.Flash.Status = d.U8()
	return fs
}
