// Package diskimage defines the interface every virtual-disk format driver
// implements (raw, qcow2, vmdk, vhd, vhdx, vdi) and the registry that opens a
// file by probing its format.
package diskimage

import (
	"errors"
	"io"
)

// Image is an open virtual disk: a random-access block device of VirtualSize
// bytes, whatever its on-disk format.
type Image interface {
	io.ReaderAt
	io.WriterAt
	// VirtualSize is the size of the disk as the guest sees it, in bytes.
	VirtualSize() int64
	// Format names the on-disk format ("raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi").
	Format() string
	// Flush makes every acknowledged write durable (fdatasync and any
	// metadata the format must write first).
	Flush() error
	// Close flushes and releases the image.
	Close() error
}

// Extent describes a run of the virtual disk: whether it holds data or reads
// as zeros. Converters use it to skip unallocated space.
type Extent struct {
	Offset, Length int64
	Zero           bool
}

// Mapper is implemented by images that can tell allocated ranges from holes.
type Mapper interface {
	// Map returns the extents covering [off, off+length), in order.
	Map(off, length int64) ([]Extent, error)
}

// Info is what `govisor image info` reports.
type Info struct {
	Format       string   `json:"format"`
	Subformat    string   `json:"subformat,omitempty"`
	VirtualSize  int64    `json:"virtual-size"`
	ActualSize   int64    `json:"actual-size"`
	ClusterSize  int64    `json:"cluster-size,omitempty"`
	BackingFile  string   `json:"backing-filename,omitempty"`
	BackingChain []string `json:"backing-chain,omitempty"`
	Dirty        bool     `json:"dirty,omitempty"`
	Corrupt      bool     `json:"corrupt,omitempty"`
	ReadOnly     bool     `json:"read-only,omitempty"`
}

// Sentinel errors shared by the format drivers.
var (
	ErrUnknownFormat = errors.New("diskimage: unknown image format")
	ErrCorrupt       = errors.New("diskimage: image is corrupt")
	ErrReadOnly      = errors.New("diskimage: image is read-only")
	ErrUnsupported   = errors.New("diskimage: unsupported image feature")
	// ErrParent reports a differencing disk whose parent is missing or is
	// not the image it was made from.
	ErrParent = errors.New("diskimage: differencing disk's parent missing or wrong")
)
