package diskimage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// ProbeSize is how many bytes of a file's start (and end) the registry hands
// to Driver.Probe (and Driver.ProbeTail); fewer when the file is shorter.
const ProbeSize = 4096

// MaxChainDepth is the deepest backing chain Open follows.
const MaxChainDepth = 64

// ErrBackingChain reports a backing chain that loops or is too deep.
var ErrBackingChain = errors.New("diskimage: backing chain loops or is too deep")

// OpenOptions says how to open an image.
type OpenOptions struct {
	// Format forces a driver by name; empty means probe the file.
	Format string
	// ReadOnly opens the image for reading only.
	ReadOnly bool
	// Direct bypasses the host page cache (O_DIRECT, QEMU's cache=none):
	// guest I/O goes straight to the storage. Raw images only.
	Direct bool
	// NoBacking leaves backing files closed (reads of unallocated ranges
	// return zeros); for info and check.
	NoBacking bool
	// Repair allows opening an image marked corrupt for writing, so that a
	// check can repair it.
	Repair bool
	// Chain holds the absolute paths of the images that reference this one
	// as their backing file, nearest last. Drivers opening a backing file
	// pass it through OpenBacking, which maintains it; callers leave it nil.
	Chain []string
}

// CreateOptions says how to create an image.
type CreateOptions struct {
	// BackingFile names the backing image, as it is stored in the new
	// image (relative paths are resolved against the new image's directory).
	BackingFile string
	// BackingFormat is the backing image's format; empty means probe it.
	BackingFormat string
	// Options holds driver-specific settings ("compat", "cluster_size",
	// "subformat", ...); drivers reject the ones they do not know.
	Options map[string]string
}

// Driver is a disk image format. Format packages register one from init().
type Driver struct {
	// Name is the format name ("qcow2"), as used by -f and -O.
	Name string
	// Probe reports whether the file starting with header (the first
	// ProbeSize bytes) is in this format. Nil for formats without a
	// signature (raw), which are only used when forced or as the fallback.
	Probe func(header []byte) bool
	// ProbeTail is optional: it reports whether a file ending with tail
	// (the last ProbeSize bytes) is in this format, for formats whose
	// signature is a footer. It is tried after every Probe failed.
	ProbeTail func(tail []byte) bool
	// Open opens an existing image.
	Open func(path string, opts OpenOptions) (Image, error)
	// Create makes a new image of size virtual bytes, replacing any file at
	// path, and returns it open for writing.
	Create func(path string, size int64, opts CreateOptions) (Image, error)
}

// OpenAs adapts a driver's open function, which returns its own image
// type, to Driver.Open: a failed open gives a nil Image, never one that
// holds a nil *T (which would compare non-nil).
func OpenAs[T Image](open func(path string, opts OpenOptions) (T, error)) func(string, OpenOptions) (Image, error) {
	return func(path string, opts OpenOptions) (Image, error) {
		img, err := open(path, opts)
		if err != nil {
			return nil, err
		}
		return img, nil
	}
}

// CreateAs adapts a driver's create function to Driver.Create as OpenAs
// does Open; parse turns the registry's options into the driver's own.
func CreateAs[T Image, O any](parse func(CreateOptions) (O, error), create func(path string, size int64, o O) (T, error)) func(string, int64, CreateOptions) (Image, error) {
	return func(path string, size int64, opts CreateOptions) (Image, error) {
		o, err := parse(opts)
		if err != nil {
			return nil, err
		}
		img, err := create(path, size, o)
		if err != nil {
			return nil, err
		}
		return img, nil
	}
}

// Infoer is implemented by images that describe themselves beyond their
// format and size (cluster size, backing chain, flags).
type Infoer interface {
	// Info describes the open image.
	Info() Info
}

// Resizer is implemented by images that can change their virtual size.
type Resizer interface {
	// Resize sets the virtual size to size bytes.
	Resize(size int64) error
}

// CompressedWriter is implemented by images that can store clusters
// compressed (qcow2, streamOptimized vmdk); converters use it when asked to
// compress.
type CompressedWriter interface {
	// CompressedClusterSize is the unit WriteCompressed takes.
	CompressedClusterSize() int64
	// WriteCompressed stores data at off, which must be cluster aligned
	// and unallocated; data is one cluster, or less for the last cluster.
	WriteCompressed(data []byte, off int64) error
}

// CheckResult is what a consistency check found, counted as qemu-img check does.
type CheckResult struct {
	Corruptions       int      `json:"corruptions"`
	Leaks             int      `json:"leaks"`
	CheckErrors       int      `json:"check-errors"`
	CorruptionsFixed  int      `json:"corruptions-fixed,omitempty"`
	LeaksFixed        int      `json:"leaks-fixed,omitempty"`
	ImageEndOffset    int64    `json:"image-end-offset,omitempty"`
	TotalClusters     int64    `json:"total-clusters,omitempty"`
	AllocatedClusters int64    `json:"allocated-clusters,omitempty"`
	Messages          []string `json:"messages,omitempty"`
}

// Checker is implemented by images whose metadata can be checked and repaired.
type Checker interface {
	// Check verifies the image's metadata; with repair it fixes what it can
	// and reports what was fixed and what is left.
	Check(repair bool) (CheckResult, error)
}

var (
	regMu   sync.RWMutex
	drivers = map[string]Driver{}
)

// canonicalOrder lists the formats in the order error messages name them.
var canonicalOrder = []string{"raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi"}

// Register adds a format driver; it panics on a duplicate or nameless
// driver, which is a programming error in an init function.
func Register(d Driver) {
	regMu.Lock()
	defer regMu.Unlock()
	if d.Name == "" || d.Open == nil {
		panic("diskimage: Register of a driver without name or Open")
	}
	if _, dup := drivers[d.Name]; dup {
		panic("diskimage: Register called twice for " + d.Name)
	}
	drivers[d.Name] = d
}

// Formats lists the registered format names, well-known ones first.
func Formats() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	var out, rest []string
	for _, n := range canonicalOrder {
		if _, ok := drivers[n]; ok {
			out = append(out, n)
		}
	}
	for n := range drivers {
		if !slices.Contains(canonicalOrder, n) {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// Lookup returns the driver registered under name, or an error that lists
// the known formats.
func Lookup(name string) (Driver, error) {
	regMu.RLock()
	d, ok := drivers[name]
	regMu.RUnlock()
	if !ok {
		return Driver{}, &unknownFormatError{name: name, known: Formats()}
	}
	return d, nil
}

// unknownFormatError names the format asked for and those that exist; it
// matches ErrUnknownFormat.
type unknownFormatError struct {
	name  string
	known []string
}

func (e *unknownFormatError) Error() string {
	return fmt.Sprintf("unknown format %q: use one of %s", e.name, strings.Join(e.known, ", "))
}

func (e *unknownFormatError) Is(target error) bool { return target == ErrUnknownFormat }

// Probe names the format of the file at path: the first driver whose Probe
// matches its header, then whose ProbeTail matches its end, else "raw".
func Probe(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("diskimage: %w", err)
	}
	defer f.Close()
	head := make([]byte, ProbeSize)
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("diskimage: read %s: %w", path, err)
	}
	head = head[:n]
	regMu.RLock()
	defer regMu.RUnlock()
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	sort.Strings(names) // deterministic probe order
	for _, n := range names {
		if p := drivers[n].Probe; p != nil && p(head) {
			return n, nil
		}
	}
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		tail := make([]byte, min(ProbeSize, st.Size()))
		if m, err := f.ReadAt(tail, st.Size()-int64(len(tail))); err == nil || err == io.EOF {
			tail = tail[:m]
			for _, n := range names {
				if p := drivers[n].ProbeTail; p != nil && p(tail) {
					return n, nil
				}
			}
		}
	}
	return "raw", nil
}

// Open opens the image at path, probing its format unless opts.Format
// forces one.
func Open(path string, opts OpenOptions) (Image, error) {
	abs, err := canonical(path)
	if err != nil {
		return nil, fmt.Errorf("diskimage: open %s: %w", path, err)
	}
	if slices.Contains(opts.Chain, abs) {
		return nil, fmt.Errorf("%w: %s refers back to itself", ErrBackingChain, path)
	}
	if len(opts.Chain) > MaxChainDepth {
		return nil, fmt.Errorf("%w: more than %d images", ErrBackingChain, MaxChainDepth)
	}
	name := opts.Format
	if name == "" {
		if name, err = Probe(path); err != nil {
			return nil, err
		}
	}
	d, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	if opts.Direct && name != "raw" {
		return nil, fmt.Errorf("%w: direct (O_DIRECT) on the %s image %s: only raw images bypass the page cache; convert it to raw or drop direct",
			ErrUnsupported, name, path)
	}
	return d.Open(path, opts)
}

// OpenBacking opens the backing file named backing by the image at parent
// (read-only), resolving a relative name against parent's directory and
// guarding against loops and too-deep chains.
func OpenBacking(parent, backing, format string, opts OpenOptions) (Image, error) {
	pabs, err := canonical(parent)
	if err != nil {
		return nil, fmt.Errorf("diskimage: backing of %s: %w", parent, err)
	}
	p := ResolveBacking(parent, backing)
	chain := append(slices.Clone(opts.Chain), pabs)
	img, err := Open(p, OpenOptions{Format: format, ReadOnly: true, Chain: chain})
	if err != nil {
		return nil, fmt.Errorf("diskimage: open backing file %q of %s: %w", backing, parent, err)
	}
	return img, nil
}

// ResolveBacking returns the path a backing file name refers to: absolute
// names as they are, relative names against the directory of parent.
func ResolveBacking(parent, backing string) string {
	if filepath.IsAbs(backing) {
		return backing
	}
	return filepath.Join(filepath.Dir(parent), backing)
}

// Create makes a new image of the given format and virtual size.
func Create(path, format string, size int64, opts CreateOptions) (Image, error) {
	d, err := Lookup(format)
	if err != nil {
		return nil, err
	}
	if d.Create == nil {
		return nil, fmt.Errorf("%w: creating %s images", ErrUnsupported, format)
	}
	if size < 0 {
		return nil, fmt.Errorf("diskimage: create %s: negative size %d", path, size)
	}
	return d.Create(path, size, opts)
}

// InfoOf opens the image at path read-only (probing its format unless
// format is set) and describes it.
func InfoOf(path, format string) (Info, error) {
	img, err := Open(path, OpenOptions{Format: format, ReadOnly: true})
	if err != nil {
		return Info{}, err
	}
	defer img.Close()
	info := Info{Format: img.Format(), VirtualSize: img.VirtualSize(), ReadOnly: true}
	if in, ok := img.(Infoer); ok {
		info = in.Info()
	}
	if info.ActualSize == 0 {
		info.ActualSize = ActualSize(path)
	}
	return info, nil
}

// ActualSize is the host space the file at path occupies, or 0 if unknown.
func ActualSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512
	}
	return st.Size()
}

func canonical(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r, nil
	} else if !os.IsNotExist(err) {
		return "", err
	}
	if _, err := os.Stat(abs); err != nil {
		return "", err
	}
	return abs, nil
}
