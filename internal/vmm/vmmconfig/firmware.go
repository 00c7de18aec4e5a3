package vmmconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SeaBIOSImage is the SeaBIOS build govisor boots with "bios" firmware:
// the 256 KiB image QEMU's PC machines use (Debian package seabios).
const SeaBIOSImage = "bios-256k.bin"

// FindSeaBIOS returns the path of SeaBIOS in $GOVISOR_FIRMWARE_DIR, else
// /usr/share/seabios (what FirmwareImage defaults to).
func FindSeaBIOS() (string, error) {
	var tried []string
	for _, dir := range []string{os.Getenv("GOVISOR_FIRMWARE_DIR"), "/usr/share/seabios"} {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, SeaBIOSImage)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("no SeaBIOS image (looked at %s): install Debian's seabios, or give the image's path", strings.Join(tried, ", "))
}
