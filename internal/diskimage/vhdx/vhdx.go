package vhdx

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/govisor/govisor/internal/diskimage"
)

// FormatName is the name diskimage reports for VHDX images.
const FormatName = "vhdx"

// Payload block states ([MS-VHDX] 2.5.1.1).
const (
	stateNotPresent       = 0
	stateUndefined        = 1
	stateZero             = 2
	stateUnmapped         = 3
	stateFullyPresent     = 6
	statePartiallyPresent = 7
	stateMask             = 7
)

// DefaultBlockSize is the payload block size Create uses unless told.
const DefaultBlockSize = 32 * mib

// CreateOptions selects what Create writes.
type CreateOptions struct {
	// Fixed makes every payload block present from the start.
	Fixed bool
	// BlockSize is the payload block size (1..256 MiB, a power of two);
	// zero means 32 MiB.
	BlockSize uint32
}

// Image is an open VHDX. It implements diskimage.Image and diskimage.Mapper
// and is safe for concurrent use.
//
// Writes allocate blocks without going through the log: the new block is
// placed past the end of the file (1 MiB aligned, so it never reuses space
// a crash may have left half-written) and its BAT entry is kept in memory.
// Flush syncs the data and only then updates the 8-byte BAT entries in
// place, single-sector writes that devices complete atomically, and syncs
// again. A crash leaves at worst unreferenced blocks, never an entry
// pointing at unwritten data; writes are durable once Flush returns. Before the first write of a session the headers get fresh
// FileWriteGuid/DataWriteGuid, as [MS-VHDX] 2.2.2 requires.
type Image struct {
	f        diskimage.File
	r        io.ReaderAt // f, or an in-memory replay of the log over f
	readOnly bool
	hdr      *Header
	hdrSlot  int
	meta     *Metadata
	batOff   int64
	size     int64
	block    int64
	ratio    int64
	fixed    bool // LeaveBlocksAllocated: reported as subformat "fixed"
	// pendingLog is set when a read-only open replayed the log in memory:
	// the file itself still needs the replay.
	pendingLog bool
	// Differencing disks only: the parent (nil with NoBacking: absent
	// sectors read as zeros) and its path.
	parent     diskimage.Image
	parentPath string

	mu      sync.RWMutex
	bat     []uint64
	end     int64       // file offset for the next block
	dirty   []int64     // BAT entries Flush must still write
	touched atomic.Bool // headers updated for this session
}

// Probe reports whether header starts with the VHDX file type identifier.
func Probe(header []byte) bool { return checkFileID(header) == nil }

// Open opens a VHDX, replaying its log first when the header names one:
// into the file for read-write opens, in memory for read-only ones.
// Differencing disks (.avhdx) open read-only, with their parent chain.
func Open(path string, readOnly bool) (*Image, error) {
	return OpenWith(path, diskimage.OpenOptions{ReadOnly: readOnly})
}

// OpenWith is Open with the registry's options: NoBacking leaves a
// differencing disk's parent closed, Chain guards against parent loops.
func OpenWith(path string, opts diskimage.OpenOptions) (*Image, error) {
	readOnly := opts.ReadOnly
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("vhdx: %w", err)
	}
	img, err := openFile(f, readOnly)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vhdx: open %s: %w", path, err)
	}
	if img.meta.HasParent && !opts.NoBacking {
		if err := img.openParent(path, opts); err != nil {
			f.Close()
			return nil, err
		}
	}
	return img, nil
}

// openFile opens the VHDX in f; the caller closes f on failure.
func openFile(f diskimage.File, readOnly bool) (*Image, error) {
	img := &Image{f: f, r: f, readOnly: readOnly}
	if err := img.load(); err != nil {
		return nil, err
	}
	return img, nil
}

func (img *Image) readFull(n int, off int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := img.r.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("read %d bytes at %#x: %w", n, off, err)
	}
	return b, nil
}

func (img *Image) load() error {
	st, err := img.f.Stat()
	if err != nil {
		return err
	}
	fileSize := st.Size()
	if fileSize < 1*mib {
		return fmt.Errorf("%w: file of %d bytes", ErrBadSignature, fileSize)
	}
	id, err := img.readFull(8, 0)
	if err != nil {
		return err
	}
	if err := checkFileID(id); err != nil {
		return err
	}
	h1, err := img.readFull(headerSize, header1Off)
	if err != nil {
		return err
	}
	h2, err := img.readFull(headerSize, header2Off)
	if err != nil {
		return err
	}
	if img.hdr, img.hdrSlot, err = pickHeader(h1, h2); err != nil {
		return err
	}
	if img.hdr.LogGUID != (GUID{}) {
		if fileSize, err = img.replay(fileSize); err != nil {
			return err
		}
	}
	if err := img.loadRegions(fileSize); err != nil {
		return err
	}
	img.end = (fileSize + mib - 1) / mib * mib
	return nil
}

// replay applies a pending log and returns the new file size. Read-write
// opens replay into the file and then write headers with an empty LogGuid
// ([MS-VHDX] 2.3.3); read-only opens replay into memory, leaving the file
// as it is.
func (img *Image) replay(fileSize int64) (int64, error) {
	if img.readOnly {
		o := newOverlay(img.f, fileSize)
		if err := replayLog(img.f, img.hdr, fileSize, o); err != nil {
			return 0, err
		}
		o.finish()
		img.r = o
		img.pendingLog = true
		return o.size, nil
	}
	if err := replayLog(img.f, img.hdr, fileSize, fileTarget{img.f}); err != nil {
		return 0, err
	}
	if err := img.f.Sync(); err != nil {
		return 0, err
	}
	img.hdr.LogGUID = GUID{}
	if err := img.writeHeaders(); err != nil {
		return 0, err
	}
	st, err := img.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// loadRegions reads the region table (the first valid copy), the metadata
// and the BAT, validating every payload block offset.
func (img *Image) loadRegions(fileSize int64) error {
	var regions []RegionEntry
	var first error
	ok := false
	for _, off := range []int64{region1Off, region2Off} {
		b, err := img.readFull(regionSize, off)
		if err == nil {
			regions, err = ParseRegionTable(b, fileSize)
		}
		if err == nil {
			ok = true
			break
		}
		if first == nil {
			first = err
		}
	}
	// A valid table may be empty: the check below then reports the
	// missing regions (fuzzing found an open that returned no error and
	// no metadata).
	if !ok {
		return first
	}
	var batR, metaR *RegionEntry
	for i := range regions {
		switch r := &regions[i]; r.GUID {
		case guidBAT:
			batR = r
		case guidMetadata:
			metaR = r
		default:
			if r.Required {
				return fmt.Errorf("%w: unknown required region", diskimage.ErrUnsupported)
			}
		}
	}
	if batR == nil || metaR == nil {
		return fmt.Errorf("%w: BAT or metadata region missing", ErrBadRegion)
	}
	mb, err := img.readFull(int(metaR.Length), int64(metaR.FileOffset))
	if err != nil {
		return err
	}
	if img.meta, err = ParseMetadata(mb); err != nil {
		return err
	}
	if img.meta.HasParent && !img.readOnly {
		return fmt.Errorf("%w: writing to a vhdx differencing disk (a Hyper-V checkpoint, .avhdx); open it read-only, or flatten the chain with `govisor image convert` and use the copy", diskimage.ErrUnsupported)
	}
	img.size = int64(img.meta.VirtualSize)
	img.block = int64(img.meta.BlockSize)
	img.ratio = img.meta.chunkRatio()
	n := img.meta.batEntries()
	if n*8 > int64(batR.Length) {
		return fmt.Errorf("%w: BAT region of %d bytes holds fewer than %d entries", ErrBadRegion, batR.Length, n)
	}
	img.batOff = int64(batR.FileOffset)
	raw, err := img.readFull(int(n*8), img.batOff)
	if err != nil {
		return err
	}
	img.bat = make([]uint64, n)
	// Fixed disks are the ones created with every block allocated and
	// LeaveBlocksAllocated set ([MS-VHDX] 2.6.2.1), as Hyper-V and qemu do.
	img.fixed = img.meta.LeaveBlocksAllocated
	for i := range img.bat {
		e := binary.LittleEndian.Uint64(raw[i*8:])
		img.bat[i] = e
		if int64(i)%(img.ratio+1) == img.ratio {
			// A sector bitmap entry ([MS-VHDX] 2.5.1.2): only differencing
			// disks use them, each a 1 MiB block.
			if err := checkBitmapEntry(img.meta.HasParent, i, e, fileSize); err != nil {
				return err
			}
			continue
		}
		switch e & stateMask {
		case stateFullyPresent, statePartiallyPresent:
			if mb := e >> 20; mb == 0 || mb > uint64(fileSize)/mib {
				return fmt.Errorf("%w: BAT entry %d points at %d MiB, past the end of a %d-byte file", diskimage.ErrCorrupt, i, mb, fileSize)
			}
		case stateNotPresent, stateUndefined, stateZero, stateUnmapped:
		default:
			return fmt.Errorf("%w: BAT entry %d has state %d", diskimage.ErrCorrupt, i, e&stateMask)
		}
	}
	return nil
}

// writeHeaders writes the header into both slots, the non-current one
// first, each with a higher sequence number ([MS-VHDX] 2.2.2.1: updating
// one header at a time keeps a valid one on disk throughout).
func (img *Image) writeHeaders() error {
	for range 2 {
		img.hdr.SequenceNumber++
		img.hdrSlot ^= 1
		off := int64(header1Off)
		if img.hdrSlot == 1 {
			off = header2Off
		}
		if _, err := img.f.WriteAt(img.hdr.Marshal(), off); err != nil {
			return fmt.Errorf("write header %d: %w", img.hdrSlot+1, err)
		}
		if err := img.f.Sync(); err != nil {
			return fmt.Errorf("sync header: %w", err)
		}
	}
	return nil
}

// batIndex maps a payload block number to its BAT entry ([MS-VHDX] 2.5).
func (img *Image) batIndex(blk int64) int64 { return blk + blk/img.ratio }

// VirtualSize is the guest-visible size in bytes.
func (img *Image) VirtualSize() int64 { return img.size }

// Format returns "vhdx".
func (img *Image) Format() string { return FormatName }

// Subformat returns "fixed" when every block is present, else "dynamic".
func (img *Image) Subformat() string {
	if img.meta.HasParent {
		return "differencing"
	}
	if img.fixed {
		return "fixed"
	}
	return "dynamic"
}

// Metadata returns the image's metadata items.
func (img *Image) Metadata() Metadata { return *img.meta }

// Info describes the open image for `govisor image info`.
func (img *Image) Info() diskimage.Info {
	info := diskimage.Info{Format: FormatName, Subformat: img.Subformat(), VirtualSize: img.size,
		ClusterSize: img.block, ReadOnly: img.readOnly, Dirty: img.pendingLog}
	if st, err := img.f.Stat(); err == nil {
		info.ActualSize = allocatedBytes(st)
	}
	if img.meta.HasParent {
		img.chainInfo(&info)
	}
	return info
}

// Flush makes completed writes durable: the new BAT entries, then the file.
func (img *Image) Flush() error {
	return diskimage.FlushFile(FormatName, img.f, img.readOnly, &img.mu, img.flushBAT)
}

// Close flushes and closes the file.
func (img *Image) Close() error {
	if img.parent != nil {
		img.parent.Close()
	}
	return diskimage.CloseFile(FormatName, img.f, img.Flush)
}
