package cli

import (
	"testing"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/vmimport"
)

// TestExportFirmware: a package declares the firmware its VM boots
// through; a VM booted from its kernel is declared for BIOS.
func TestExportFirmware(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{api.FirmwareUEFI, vmimport.FirmwareUEFI},
		{api.FirmwareBIOS, vmimport.FirmwareBIOS},
		{"", vmimport.FirmwareBIOS},
	} {
		if got := exportFirmware(tc.in); got != tc.want {
			t.Errorf("exportFirmware(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
