// Package all registers every disk image format driver with diskimage;
// import it for its side effects.
package all

import (
	// Each driver registers itself from init().
	_ "github.com/govisor/govisor/internal/diskimage/qcow2"
	_ "github.com/govisor/govisor/internal/diskimage/raw"
	_ "github.com/govisor/govisor/internal/diskimage/vdi"
	_ "github.com/govisor/govisor/internal/diskimage/vhd"
	_ "github.com/govisor/govisor/internal/diskimage/vhdx"
	_ "github.com/govisor/govisor/internal/diskimage/vmdk"
)
