package disklease

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Options tune a lease's timing. The holder gives up (FenceAfter) well
// before others may take over (Expire): the difference is the time its VMM
// has to stop the guest and let in-flight disk writes end.
type Options struct {
	Renew      time.Duration // how often the holder writes; default 1 s
	FenceAfter time.Duration // the holder gives up after this long without a renewal; default 3 s
	Expire     time.Duration // a lease unchanged for this long is dead; default 6 s
	Settle     time.Duration // wait after writing a claim before trusting it; default Renew
}

func (o *Options) fill() error {
	if o.Renew == 0 {
		o.Renew = time.Second
	}
	if o.FenceAfter == 0 {
		o.FenceAfter = 3 * o.Renew
	}
	if o.Expire == 0 {
		o.Expire = 2 * o.FenceAfter
	}
	if o.Settle == 0 {
		o.Settle = o.Renew
	}
	switch {
	case o.Renew < 0 || o.FenceAfter < 0 || o.Expire < 0 || o.Settle < 0:
		return errors.New("disklease: timings must not be negative")
	case o.FenceAfter < 2*o.Renew:
		return fmt.Errorf("disklease: FenceAfter %v must be at least twice Renew %v (one late renewal must not fence)", o.FenceAfter, o.Renew)
	case o.Settle > o.FenceAfter/2:
		return fmt.Errorf("disklease: Settle %v must be at most half of FenceAfter %v (nothing renews while a claim settles)", o.Settle, o.FenceAfter)
	case o.Expire <= o.FenceAfter:
		return fmt.Errorf("disklease: Expire %v must be longer than FenceAfter %v (the holder stops before others take over)", o.Expire, o.FenceAfter)
	}
	return nil
}

// Path is the lease file of a disk image.
func Path(disk string) string { return disk + ".lease" }

// HeldError is returned when a live VMM holds the lease.
type HeldError struct {
	Disk  string
	Owner Owner
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("disklease: disk %s is in use by VM %s (its lease is being renewed): stop that VM first; if its host is dead, the lease expires on its own", e.Disk, e.Owner)
}

// Lease is a held lease, renewed in the background until Release, or until
// it is lost (Lost is closed).
type Lease struct {
	disk   string
	owner  Owner
	opts   Options
	f      *leaseFile
	nonce  uint64
	lastOK atomic.Int64 // monotonic ns (since start) when the last successful renewal began
	start  time.Time

	lostOnce sync.Once
	lost     chan struct{}
	lostErr  error
	stop     chan struct{}
	done     sync.WaitGroup
	mu       sync.Mutex // serialises I/O on f between renewals and Release
}

// Acquire takes the lease of disk for owner. A lease nobody holds, or held
// by the same owner (the same VM restarted on the same host), is claimed at
// once; one held by another owner is watched for opts.Expire and claimed
// only if it never changed meanwhile (its holder is dead); a change means a
// live holder, and a *HeldError. A claim is trusted after opts.Settle, when
// it is still there (another host claiming at the same moment loses).
func Acquire(ctx context.Context, disk string, owner Owner, opts Options) (*Lease, error) {
	return AcquireSeen(ctx, disk, owner, opts, Seen{})
}

func acquire(ctx context.Context, f *leaseFile, disk string, owner Owner, opts Options, seen Seen) (*Lease, error) {
	cur, sum, err := f.read()
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return nil, err
	}
	if errors.Is(err, ErrCorrupt) || (!cur.free() && cur.Owner != owner) {
		// Someone may hold it: watch it for the whole expiry time. A torn
		// or foreign record is watched the same way, by its bytes. What an
		// observer saw unchanged before counts (see Seen).
		wait := opts.Expire
		if seen.For > 0 && seen.Sum == sum {
			wait = max(opts.Expire-seen.For, 0)
		}
		deadline := time.Now().Add(wait)
		for time.Now().Before(deadline) {
			if err := sleep(ctx, opts.Renew/2); err != nil {
				return nil, err
			}
			r, s, err := f.read()
			if err != nil && !errors.Is(err, ErrCorrupt) {
				return nil, err
			}
			if s == sum {
				continue
			}
			if err == nil && r.free() {
				cur = r
				break
			}
			return nil, &HeldError{Disk: disk, Owner: r.Owner}
		}
	}
	// The claim is written right after a read that still shows what the
	// decision was based on: a claim based on an old read could land after
	// another acquirer's claim had already settled.
	decided := time.Now()
	again, againSum, err := f.read()
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return nil, err
	}
	if againSum != sum && !(err == nil && again.free()) {
		return nil, &HeldError{Disk: disk, Owner: again.Owner}
	}
	if err == nil && again.Gen > cur.Gen {
		cur = again
	}
	claim := Record{Gen: cur.Gen + 1, Nonce: newNonce(), Written: time.Now(), Owner: owner}
	l := newLease(f, disk, owner, opts, claim.Nonce)
	began := l.now()
	if err := f.write(claim); err != nil {
		return nil, err
	}
	// Two claims based on the same free record are told apart by reading
	// back after Settle, which holds only if each landed well within
	// Settle of its read. A slower one is not trusted: a holder it may have
	// overwritten loses the lease at its next renewal (and fences), so
	// the worst case is no copy running, never two.
	if took := time.Since(decided); took > opts.Settle/2 {
		return nil, fmt.Errorf("disklease: claiming %s took %v (more than %v): the storage is too slow to trust the claim; try again", disk, took.Round(time.Millisecond), opts.Settle/2)
	}
	if err := sleep(ctx, opts.Settle); err != nil {
		return nil, err
	}
	r, _, err := f.read()
	if err != nil {
		return nil, fmt.Errorf("disklease: check the claim on %s: %w", disk, err)
	}
	if r.Nonce != claim.Nonce || r.Owner != owner {
		return nil, &HeldError{Disk: disk, Owner: r.Owner}
	}
	l.lastOK.Store(began)
	l.run()
	return l, nil
}

// Adopt takes over a lease that its previous holder handed to owner with
// Transfer (a live migration's handover): no waiting, since the record
// already names owner with the nonce both sides agreed on.
func Adopt(ctx context.Context, disk string, owner Owner, nonce uint64, opts Options) (*Lease, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	f, err := openLeaseFile(Path(disk))
	if err != nil {
		return nil, err
	}
	l := newLease(f, disk, owner, opts, nonce)
	began := l.now()
	r, _, err := f.read()
	if err == nil && (r.Nonce != nonce || r.Owner != owner || r.Released) {
		err = fmt.Errorf("disklease: the lease of %s was not handed to %s (it names %s)", disk, owner, r.Owner)
	}
	if err != nil {
		f.close()
		return nil, err
	}
	l.lastOK.Store(began)
	l.run()
	return l, nil
}

// NewNonce makes the nonce a Transfer and its Adopt agree on.
func NewNonce() uint64 { return newNonce() }

func newNonce() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) | 1 // never 0: a fresh record's
}

func newLease(f *leaseFile, disk string, owner Owner, opts Options, nonce uint64) *Lease {
	return &Lease{disk: disk, owner: owner, opts: opts, f: f, nonce: nonce, start: time.Now(),
		lost: make(chan struct{}), stop: make(chan struct{})}
}

func (l *Lease) now() int64 { return int64(time.Since(l.start)) }

func (l *Lease) run() {
	l.done.Add(2)
	go l.renewLoop()
	go l.watchLoop()
}

// Lost is closed when the lease can no longer be trusted: it was not
// renewed for FenceAfter, or another owner's record replaced it. The VMM
// must stop the guest at once.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Err says why the lease was lost (nil while it is held).
func (l *Lease) Err() error {
	select {
	case <-l.lost:
		return l.lostErr
	default:
		return nil
	}
}

func (l *Lease) lose(err error) {
	l.lostOnce.Do(func() {
		l.lostErr = err
		close(l.lost)
	})
}

func (l *Lease) renewLoop() {
	defer l.done.Done()
	t := time.NewTicker(l.opts.Renew)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.lost:
			return
		case <-t.C:
		}
		began := l.now()
		l.mu.Lock()
		err := l.renewOnce()
		l.mu.Unlock()
		if err == nil {
			l.lastOK.Store(began)
			continue
		}
		var held *HeldError
		if errors.As(err, &held) {
			l.lose(fmt.Errorf("disklease: the lease of %s was taken over by %s", l.disk, held.Owner))
			return
		}
		// An I/O error: the watchdog decides when it has lasted too long.
	}
}

func (l *Lease) renewOnce() error {
	r, _, err := l.f.read()
	if err != nil {
		return err
	}
	if r.Nonce != l.nonce || r.Owner != l.owner || r.Released {
		return &HeldError{Disk: l.disk, Owner: r.Owner}
	}
	r.Gen++
	r.Written = time.Now()
	return l.f.write(r)
}

// watchLoop loses the lease once renewals have failed (or hung in a storage
// call) for FenceAfter: by then other hosts are still Expire-FenceAfter
// away from taking it.
func (l *Lease) watchLoop() {
	defer l.done.Done()
	t := time.NewTicker(l.opts.Renew / 4)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.lost:
			return
		case <-t.C:
		}
		if since := time.Duration(l.now() - l.lastOK.Load()); since > l.opts.FenceAfter {
			l.lose(fmt.Errorf("disklease: the lease of %s was not renewed for %v (storage unreachable?): others may take it after %v", l.disk, since.Round(time.Millisecond), l.opts.Expire))
			return
		}
	}
}

// Release gives the lease up: the record says released, so the next owner
// claims it without waiting. A lost lease is left as it is.
func (l *Lease) Release(ctx context.Context) error {
	return l.finish(ctx, func(r *Record) { r.Released = true })
}

// Transfer hands the lease to another owner (the destination of a live
// migration, once the guest is paused here): the record names it, with the
// nonce it will Adopt the lease with, and this side stops renewing.
func (l *Lease) Transfer(ctx context.Context, to Owner, nonce uint64) error {
	return l.finish(ctx, func(r *Record) { r.Owner, r.Nonce = to, nonce })
}

func (l *Lease) finish(ctx context.Context, change func(*Record)) error {
	select {
	case <-l.stop:
		return errors.New("disklease: the lease was already released")
	default:
	}
	close(l.stop)
	res := make(chan error, 1)
	go func() {
		l.done.Wait()
		l.mu.Lock()
		defer l.mu.Unlock()
		defer l.f.close()
		if err := l.Err(); err != nil {
			res <- nil // lost: someone else's record may be there now
			return
		}
		r, _, err := l.f.read()
		if err != nil {
			res <- err
			return
		}
		if r.Nonce != l.nonce || r.Owner != l.owner {
			res <- nil
			return
		}
		r.Gen++
		r.Written = time.Now()
		change(&r)
		res <- l.f.write(r)
	}()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("disklease: release %s: %w (the storage does not answer; the lease expires on its own)", l.disk, ctx.Err())
	}
}

// Inspect reads the lease record of disk (a missing file is a free lease).
func Inspect(disk string) (Record, error) {
	f, err := os.Open(Path(disk))
	if errors.Is(err, os.ErrNotExist) {
		return Record{}, nil
	}
	if err != nil {
		return Record{}, fmt.Errorf("disklease: %w", err)
	}
	defer f.Close()
	b := make([]byte, recordSize)
	n, err := f.ReadAt(b, 0)
	if n == 0 {
		return Record{}, nil
	}
	if n < recordSize {
		return Record{}, fmt.Errorf("disklease: %s: %w", Path(disk), err)
	}
	return decode(b)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// leaseFile is the open lease file. With O_DIRECT (NFS, local file
// systems) every read goes to the storage, never to this host's cache;
// where O_DIRECT is refused (tmpfs) writes are synchronous instead.
type leaseFile struct {
	f   *os.File
	buf []byte // page-aligned, as O_DIRECT wants
}

func openLeaseFile(path string) (*leaseFile, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_DIRECT, 0o600)
	if err == unix.EINVAL {
		fd, err = unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_DSYNC, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("disklease: open %s: %w", path, err)
	}
	buf, err := unix.Mmap(-1, 0, recordSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("disklease: buffer: %w", err)
	}
	return &leaseFile{f: os.NewFile(uintptr(fd), path), buf: buf}, nil
}

// read returns the record, and a checksum of its bytes (to see any change,
// even of a record that does not decode). An empty file is a free lease.
func (lf *leaseFile) read() (Record, uint32, error) {
	n, err := lf.f.ReadAt(lf.buf, 0)
	if n == 0 {
		if err == nil || errors.Is(err, io.EOF) {
			return Record{}, 0, nil
		}
		return Record{}, 0, fmt.Errorf("disklease: read %s: %w", lf.f.Name(), err)
	}
	if n < recordSize {
		return Record{}, crc32.ChecksumIEEE(lf.buf[:n]), fmt.Errorf("%w: %s holds %d bytes", ErrCorrupt, lf.f.Name(), n)
	}
	// Not over the stored CRC too: a block ending in its own CRC-32 always
	// sums to the same residue.
	sum := crc32.ChecksumIEEE(lf.buf[:recordSize-4])
	r, err := decode(lf.buf)
	return r, sum, err
}

func (lf *leaseFile) write(r Record) error {
	if err := r.encode(lf.buf); err != nil {
		return err
	}
	if _, err := lf.f.WriteAt(lf.buf, 0); err != nil {
		return fmt.Errorf("disklease: write %s: %w", lf.f.Name(), err)
	}
	return nil
}

func (lf *leaseFile) close() {
	lf.f.Close()
	unix.Munmap(lf.buf)
}
