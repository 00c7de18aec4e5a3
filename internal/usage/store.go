package usage

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Samples go to one file per UTC hour, usage-YYYYMMDDHH.log: appending
// touches only the newest file, retention deletes whole files, and a query
// opens only the hours it covers.
const (
	filePrefix = "usage-"
	fileSuffix = ".log"
	hourLayout = "2006010215"
)

// DefaultRetention is how long samples are kept unless configured.
const DefaultRetention = 7 * 24 * time.Hour

// Store is a directory of sample files. It is safe for concurrent use.
type Store struct {
	dir       string
	retention time.Duration

	mu    sync.Mutex
	f     *os.File
	fHour time.Time
	buf   []byte
}

// OpenStore opens (creating it) the sample directory dir; retention <= 0
// means DefaultRetention.
func OpenStore(dir string, retention time.Duration) (*Store, error) {
	if retention <= 0 {
		retention = DefaultRetention
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("usage: create %s: %w", dir, err)
	}
	return &Store{dir: dir, retention: retention}, nil
}

func hourOf(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

func (s *Store) fileFor(hour time.Time) string {
	return filepath.Join(s.dir, filePrefix+hour.Format(hourLayout)+fileSuffix)
}

// Append writes samples to the files of their hours.
func (s *Store) Append(samples ...Sample) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(samples) > 0 {
		h := hourOf(samples[0].Time)
		s.buf = s.buf[:0]
		n := 0
		for n < len(samples) && hourOf(samples[n].Time).Equal(h) {
			s.buf = AppendLine(s.buf, samples[n])
			n++
		}
		if err := s.writeHour(h, s.buf); err != nil {
			return err
		}
		samples = samples[n:]
	}
	return nil
}

// writeHour appends b to hour's file in one write, so a crash tears at
// most the last line.
func (s *Store) writeHour(h time.Time, b []byte) error {
	if s.f == nil || !s.fHour.Equal(h) {
		if s.f != nil {
			s.f.Close()
			s.f = nil
		}
		f, err := openAppend(s.fileFor(h))
		if err != nil {
			return err
		}
		s.f, s.fHour = f, h
	}
	if _, err := s.f.Write(b); err != nil {
		return fmt.Errorf("usage: append to %s: %w", s.f.Name(), err)
	}
	return nil
}

// openAppend opens path for appending. If a crash left a torn last line,
// it ends that line first: otherwise the next sample would be glued to it
// and lost along with it.
func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("usage: open %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("usage: stat %s: %w", path, err)
	}
	if st.Size() > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], st.Size()-1); err != nil {
			f.Close()
			return nil, fmt.Errorf("usage: read %s: %w", path, err)
		}
		if last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				f.Close()
				return nil, fmt.Errorf("usage: repair %s: %w", path, err)
			}
		}
	}
	return f, nil
}

// Close closes the open file.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// hourFile is one sample file and the hour it holds.
type hourFile struct {
	path string
	hour time.Time
}

// files lists the sample files, oldest first; other files are ignored.
func (s *Store) files() ([]hourFile, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("usage: list %s: %w", s.dir, err)
	}
	var out []hourFile
	for _, e := range ents {
		name := e.Name()
		stamp, ok := strings.CutPrefix(name, filePrefix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		stamp, ok = strings.CutSuffix(stamp, fileSuffix)
		if !ok {
			continue
		}
		h, err := time.Parse(hourLayout, stamp)
		if err != nil {
			continue
		}
		out = append(out, hourFile{filepath.Join(s.dir, name), h})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].hour.Before(out[j].hour) })
	return out, nil
}

// Prune deletes the files whose whole hour is older than the retention.
func (s *Store) Prune(now time.Time) error {
	fs, err := s.files()
	if err != nil {
		return err
	}
	cut := now.Add(-s.retention)
	var errs []error
	for _, f := range fs {
		if !f.hour.Add(time.Hour).Before(cut) {
			break
		}
		s.mu.Lock()
		if s.f != nil && s.f.Name() == f.path {
			s.f.Close()
			s.f = nil
		}
		s.mu.Unlock()
		if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("usage: prune: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ErrTooMany is returned by a query that would hold more than its
// MaxSamples: the caller should narrow the window or thin it with a step.
var ErrTooMany = errors.New("usage: too many samples")

// Query selects samples.
type Query struct {
	From, To   time.Time     // the window, both ends included
	VM         string        // only this VM (and the host); empty: every VM
	Step       time.Duration // keep at most one sample per series per step; 0: all
	MaxSamples int           // fail with ErrTooMany beyond this many; 0: no limit
}

// Result is the answer to a query.
type Result struct {
	Samples []Sample // by time, then host, then VM (the host first)
	Skipped int      // damaged lines passed over (a crash's torn line, say)
}

// seriesKey names one series: a VM, or the host, on a host.
type seriesKey struct{ host, vm string }

// Query reads the samples in q's window.
func (s *Store) Query(q Query) (Result, error) {
	var res Result
	if q.To.Before(q.From) {
		return res, nil
	}
	fs, err := s.files()
	if err != nil {
		return res, err
	}
	lastBucket := map[seriesKey]int64{}
	tooMany := false
	for _, f := range fs {
		if f.hour.Add(time.Hour).Before(q.From) || f.hour.After(q.To) {
			continue
		}
		file, err := os.Open(f.path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) { // pruned meanwhile
				continue
			}
			return res, fmt.Errorf("usage: open %s: %w", f.path, err)
		}
		skipped, err := ReadSamples(file, func(x Sample) {
			if x.Time.Before(q.From) || x.Time.After(q.To) || (q.VM != "" && x.VM != "" && x.VM != q.VM) {
				return
			}
			if q.Step > 0 {
				k := seriesKey{x.Host, x.VM}
				b := int64(x.Time.Sub(q.From) / q.Step)
				if last, ok := lastBucket[k]; ok && last == b {
					return
				}
				lastBucket[k] = b
			}
			if q.MaxSamples > 0 && len(res.Samples) >= q.MaxSamples {
				tooMany = true
				return
			}
			res.Samples = append(res.Samples, x)
		})
		file.Close()
		res.Skipped += skipped
		if err != nil {
			return res, fmt.Errorf("usage: read %s: %w", f.path, err)
		}
		if tooMany {
			return Result{}, fmt.Errorf("%w: more than %d in the window", ErrTooMany, q.MaxSamples)
		}
	}
	sort.SliceStable(res.Samples, func(i, j int) bool {
		a, b := res.Samples[i], res.Samples[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		return a.VM < b.VM
	})
	return res, nil
}

// ReadSamples parses a sample file, calling fn for each valid line in
// order. Damaged lines — a torn last line without its newline, a checksum
// mismatch, an overlong line — are counted and skipped; err is only for
// read failures.
func ReadSamples(r io.Reader, fn func(Sample)) (skipped int, err error) {
	br := bufio.NewReaderSize(r, maxLine+1)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			// Too long to be ours: skip to the end of the line.
			skipped++
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				return skipped, nil
			}
			if err != nil {
				return skipped, err
			}
			continue
		case err == io.EOF:
			if len(line) > 0 {
				skipped++ // torn by a crash mid-write
			}
			return skipped, nil
		case err != nil:
			return skipped, err
		}
		line = bytes.TrimSuffix(line, []byte{'\n'})
		if len(line) == 0 {
			continue // the newline that ended a torn line
		}
		smp, perr := ParseLine(line)
		if perr != nil {
			skipped++
			continue
		}
		fn(smp)
	}
}
