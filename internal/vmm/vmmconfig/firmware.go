package vmmconfig

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Firmware kinds (Config.Firmware).
const (
	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"
)

// SeaBIOSImage is the SeaBIOS build govisor boots with "bios" firmware:
// the 256 KiB image QEMU's PC machines use (Debian package seabios).
const SeaBIOSImage = "bios-256k.bin"

// OVMF's 4 MiB build without secure boot (Debian package ovmf): its code,
// and the variable-store template each VM's variable file starts from.
const (
	OVMFCode = "OVMF_CODE_4M.fd"
	OVMFVars = "OVMF_VARS_4M.fd"
)

// FindSeaBIOS returns the path of SeaBIOS in $GOVISOR_FIRMWARE_DIR, else
// /usr/share/seabios (what FirmwareImage defaults to).
func FindSeaBIOS() (string, error) {
	return findFile(SeaBIOSImage, "/usr/share/seabios", "install Debian's seabios, or give the image's path")
}

// FindOVMF returns the path of OVMF's code in $GOVISOR_FIRMWARE_DIR, else
// /usr/share/OVMF (what FirmwareImage defaults to with uefi firmware).
func FindOVMF() (string, error) {
	return findFile(OVMFCode, "/usr/share/OVMF", "install Debian's ovmf, or give the image's path")
}

// FindFirmware returns the default image of a firmware kind.
func FindFirmware(kind string) (string, error) {
	if kind == FirmwareUEFI {
		return FindOVMF()
	}
	return FindSeaBIOS()
}

func findFile(name, system, fix string) (string, error) {
	var tried []string
	for _, dir := range []string{os.Getenv("GOVISOR_FIRMWARE_DIR"), system} {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("no %s (looked at %s): %s", name, strings.Join(tried, ", "), fix)
}

// VarsTemplate returns OVMF's variable-store template for the code image
// at code: OVMFVars beside it, else where FindOVMF looks.
func VarsTemplate(code string) (string, error) {
	if code != "" {
		p := filepath.Join(filepath.Dir(code), OVMFVars)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return findFile(OVMFVars, "/usr/share/OVMF", "install Debian's ovmf, or put it beside the code image")
}

// PrepareVars makes the VM's UEFI variable file at path, a copy of OVMF's
// template for the code image at code, unless it exists (it then holds
// what the VM's firmware stored, which must survive). The copy is written
// aside and renamed, so that a crash leaves no half file to boot from.
func PrepareVars(path, code string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("UEFI variable file: %w", err)
	}
	tmpl, err := VarsTemplate(code)
	if err != nil {
		return err
	}
	src, err := os.Open(tmpl)
	if err != nil {
		return fmt.Errorf("UEFI variable template: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".vars-*")
	if err != nil {
		return fmt.Errorf("UEFI variable file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, src)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("UEFI variable file %s from %s: %w", path, tmpl, err)
	}
	return nil
}
