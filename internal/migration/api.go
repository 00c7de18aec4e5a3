package migration

import "time"

// Source is the running VM being migrated away (the VMM implements it).
type Source interface {
	// Regions returns the guest RAM layout; DirtyBitmap's bitmaps follow
	// its order.
	Regions() []Region
	// ReadMemory copies guest memory at gpa into p; [gpa, gpa+len(p)) lies
	// inside one region and is page-aligned.
	ReadMemory(gpa uint64, p []byte) error
	// DirtyBitmap returns and clears, per region in Regions order, the
	// pages written since the previous call (bit i of word i/64 = page i):
	// KVM's dirty log OR'ed with the pages the VMM's device code wrote.
	// Send calls it once before copying anything, to start a clean epoch,
	// and owns (may modify) the returned slices.
	DirtyBitmap() ([][]uint64, error)
	// Pause stops the vCPUs and device emulation (no more guest writes).
	Pause() error
	// Resume restarts a paused VM; Send calls it when migration fails.
	Resume() error
	// DeviceState captures vCPU, irqchip, clock and device state; it is
	// called while paused and the bytes reach Destination.Commit unchanged.
	DeviceState() ([]byte, error)
}

// ZeroHinter is implemented by a Source that can tell, without reading
// them, which pages were never written (and so read as zero): the full copy
// then skips them. A wrong hint loses data, so only pages that are certain
// to be zero may be set.
type ZeroHinter interface {
	// NeverWritten returns, for region i of Regions, a bitmap (bit p of
	// word p/64 = page p) of pages known to read as zero; nil if unknown.
	NeverWritten(i int) []uint64
}

// Throttler is implemented by a Source that can slow its vCPUs, for
// auto-converge.
type Throttler interface {
	// Throttle keeps the vCPUs out of the guest percent% of the time
	// (0 = full speed).
	Throttle(percent int) error
}

// DiskBlockSize is the unit of disk mirroring and of DiskSource bitmaps.
const DiskBlockSize = 64 << 10

// DiskSource is implemented by a Source whose disks are mirrored to the
// destination (no shared storage). With shared storage, do not implement it
// or return no disks.
type DiskSource interface {
	// Disks returns the size in bytes of each mirrored disk.
	Disks() []int64
	// ReadDisk reads len(p) bytes of disk at off.
	ReadDisk(disk int, off int64, p []byte) error
	// DirtyDiskBlocks returns and clears the bitmap of DiskBlockSize
	// blocks of disk written since the previous call.
	DirtyDiskBlocks(disk int) ([]uint64, error)
}

// Destination is the VM being built on the receiving side.
type Destination interface {
	// Regions returns the guest RAM layout; it must equal the source's.
	Regions() []Region
	// WriteMemory copies p into guest memory at gpa (validated: one
	// page-aligned page inside Regions). Memory starts all-zero.
	WriteMemory(gpa uint64, p []byte) error
	// Commit loads the device state into the paused VM. An error aborts the
	// migration and the source resumes. The VM must not run until Receive
	// returns successfully.
	Commit(deviceState []byte) error
}

// PostCopyDestination is implemented by a Destination that can run the VM
// before all of its memory arrived (post-copy, Options.PostCopy): the pages
// it lacks are fetched from the source when first touched.
type PostCopyDestination interface {
	// ArmPostCopy is called after Commit and before the VM may run. It
	// drops the stale copies of the pages set in missing (per region in
	// Regions order, bit p of word p/64 = page p) and makes every access to
	// one of them, by the guest or the VMM, wait until PlacePage installs
	// it; for each page an access waits on it calls request(gpa) (safe from
	// any goroutine, returns at once). Pages never written are zero, as
	// before.
	ArmPostCopy(missing [][]uint64, request func(gpa uint64)) error
	// PlacePage installs missing page gpa (one page) and wakes whatever
	// waits on it; a page placed before is left as it is.
	PlacePage(gpa uint64, p []byte) error
	// EndPostCopy is called once after ArmPostCopy: with nil when every
	// missing page was placed (memory is ordinary memory again), or with
	// the error that ended post-copy early; the VM cannot continue then and
	// must stop without running on the missing pages.
	EndPostCopy(err error)
}

// DiskDestination is implemented by a Destination that receives mirrored
// disks; each disk must read as zeroes initially (a fresh sparse image).
type DiskDestination interface {
	// Disks returns the size in bytes of each disk; it must equal the source's.
	Disks() []int64
	// WriteDisk writes p to disk at off (validated against Disks).
	WriteDisk(disk int, off int64, p []byte) error
}

// Options tune Send.
type Options struct {
	// MaxDowntime is the pause the guest may see (default 300 ms).
	MaxDowntime time.Duration
	// Bandwidth limits the transfer while the guest runs, in bytes per
	// second (0 = unlimited); the final paused phase is never limited.
	Bandwidth int64
	// MaxRounds stops pre-copy after this many rounds even if the
	// remaining set does not fit MaxDowntime (default 30).
	MaxRounds int
	// AutoConverge throttles the guest (Source must implement Throttler)
	// when a round does not shrink the dirty set.
	AutoConverge bool
	// PostCopy switches to post-copy when the first dirty round after the
	// full copy does not fit MaxDowntime (the destination must implement
	// PostCopyDestination): the destination runs at once and fetches the
	// pages dirtied since the full copy on demand while the rest stream in
	// behind. It always converges, but the VM is lost if the connection
	// fails before every page arrived: neither side holds all of it.
	// Not with disk mirroring.
	PostCopy bool
	// Compress offers S2 compression of page batches.
	Compress bool
	// HandoverTimeout bounds the wait for DONE after GO (default 10 s).
	HandoverTimeout time.Duration
	// Progress, if set, is called after every round and at pause.
	Progress func(Progress)
	// BeforeGo, if set, is called once the destination holds the whole VM
	// (its ACK) and before GO lets it run: the last moment to hand over
	// what only one side may hold (disk leases). An error fails the
	// migration and the source resumes.
	BeforeGo func() error
}

// Progress is a snapshot of a running migration for the API and CLI.
type Progress struct {
	Round            int           // rounds completed (0 = the full copy)
	BytesSent        int64         // bytes written or queued for the connection
	PagesSent        uint64        // pages sent so far (zero entries included)
	DirtyPages       int           // pages dirtied during the last round
	RemainingPages   uint64        // pages left to send in this round (full copy: RAM not yet scanned)
	DirtyRate        float64       // pages dirtied per second in the last round
	Bandwidth        float64       // measured transfer rate, bytes per second
	ExpectedDowntime time.Duration // estimated pause to send what remains
	Throttle         int           // current auto-converge throttle, percent
	Paused           bool          // the source is paused (final phase)
	PostCopy         bool          // the destination runs the VM; RemainingPages follow
}

// Stats summarise a finished (or failed) migration.
type Stats struct {
	Rounds            int           // pre-copy rounds after the full copy
	BytesSent         int64         // bytes written to the connection
	PagesSent         uint64        // page entries sent, zero entries included
	ZeroPages         uint64        // page entries sent without data
	DiskBlocks        uint64        // disk blocks sent
	Total             time.Duration // from Send's start to its return
	Downtime          time.Duration // from Pause to the destination's DONE
	Throttle          int           // final auto-converge throttle, percent
	Resumed           bool          // Send resumed the paused source after a failure
	PostCopy          bool          // the migration switched to post-copy
	PostCopyPages     uint64        // pages sent after the destination started running
	PostCopyRequested uint64        // of those, pages the destination asked for
}
