package disklease

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Seen is what an observer knew of a lease record before an acquirer
// read it: the record's checksum, and for how long it had stayed so.
// Every write of a record raises its generation, so a record that still
// has that checksum has not been written since the observer first saw it:
// its holder has been silent for at least For, and the acquirer need only
// watch the rest of the expiry time. This is how an HA restart does not
// pay the whole expiry on top of the host lease: the cluster's leader
// watches the HA VMs' leases all along (Observer).
type Seen struct {
	Sum uint32
	For time.Duration
}

// AcquireSeen is Acquire, counting what an observer saw (see Seen).
func AcquireSeen(ctx context.Context, disk string, owner Owner, opts Options, seen Seen) (*Lease, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	if owner.Host == "" || owner.VM == "" {
		return nil, errors.New("disklease: the owner needs a host and a VM name")
	}
	f, err := openLeaseFile(Path(disk))
	if err != nil {
		return nil, err
	}
	l, err := acquire(ctx, f, disk, owner, opts, seen)
	if err != nil {
		f.close()
		return nil, err
	}
	return l, nil
}

// Observer follows lease records over time, reading each one when asked
// (Observe), and says for how long each has stayed unchanged (Seen). It
// never writes.
type Observer struct {
	mu   sync.Mutex
	seen map[string]observed
}

type observed struct {
	sum   uint32
	since time.Time // when this checksum was first read (monotonic)
	held  bool      // the record names a holder (not free)
}

// Observe reads disk's lease record once. A missing file is no record.
func (o *Observer) Observe(disk string) error {
	sum, held, err := readSum(Path(disk))
	if err != nil {
		return err
	}
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen == nil {
		o.seen = map[string]observed{}
	}
	if cur, ok := o.seen[disk]; !ok || cur.sum != sum {
		o.seen[disk] = observed{sum: sum, since: now, held: held}
	}
	return nil
}

// Seen says for how long disk's lease record has been seen unchanged
// (false: never read, or free).
func (o *Observer) Seen(disk string) (Seen, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	cur, ok := o.seen[disk]
	if !ok || !cur.held {
		return Seen{}, false
	}
	return Seen{Sum: cur.sum, For: time.Since(cur.since)}, true
}

// Keep forgets every disk keep refuses (VMs deleted, no longer HA).
func (o *Observer) Keep(keep func(disk string) bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for d := range o.seen {
		if !keep(d) {
			delete(o.seen, d)
		}
	}
}

// readSum reads a lease file's checksum as acquire computes it, and
// whether it names a holder, without creating or writing it.
func readSum(path string) (uint32, bool, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_DIRECT, 0)
	if err == unix.EINVAL {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return 0, false, fmt.Errorf("disklease: open %s: %w", path, err)
	}
	buf, err := unix.Mmap(-1, 0, recordSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		unix.Close(fd)
		return 0, false, fmt.Errorf("disklease: buffer: %w", err)
	}
	lf := &leaseFile{f: os.NewFile(uintptr(fd), path), buf: buf}
	defer lf.close()
	r, sum, err := lf.read()
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return 0, false, err
	}
	return sum, errors.Is(err, ErrCorrupt) || !r.free(), nil
}
