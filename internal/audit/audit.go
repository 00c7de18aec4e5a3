// Package audit keeps the agent's audit log (issue 15): one JSON line per
// change made through the API, appended to a file in the agent's state
// directory, and read back for GET /v1/audit.
package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/govisor/govisor/api"
)

// FileName is the log's name in the agent's state directory.
const FileName = "audit.jsonl"

// maxLine bounds one record when reading: a longer line is damage.
const maxLine = 64 << 10

// DefaultMaxSize is the size at which the log is rotated: the file
// becomes FILE.1 (replacing the one before) and a new one begins. About
// 300,000 records each.
const DefaultMaxSize = 64 << 20

// Log is an append-only JSON-lines file, rotated at MaxSize.
type Log struct {
	path string
	// MaxSize is the size at which Append rotates the file (0: never).
	MaxSize int64
	mu      sync.Mutex
	f       *os.File
	size    int64
}

// Open opens (or creates, mode 0600: the log names tokens and targets)
// the log at path for appending.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	l := &Log{path: path, MaxSize: DefaultMaxSize, f: f}
	// A torn last line (a crash mid-write) is ended, so that the next
	// record starts a line of its own.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		l.size = st.Size()
		last := make([]byte, 1)
		if r, err := os.Open(path); err == nil {
			if _, err := r.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
				if n, err := f.Write([]byte{'\n'}); err == nil {
					l.size += int64(n)
				}
			}
			r.Close()
		}
	}
	return l, nil
}

// rotateLocked moves the full file to FILE.1 and starts a new one; l.mu
// is held.
func (l *Log) rotateLocked() error {
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("audit log: rotate: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: rotate: %w", err)
	}
	l.f.Close()
	l.f, l.size = f, 0
	return nil
}

// Append writes rec as one line. Each record is one write(2) on an
// O_APPEND file: a crash leaves at most one torn last line, which Read
// skips.
func (l *Log) Append(rec api.AuditRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return fmt.Errorf("audit log %s: closed", l.path)
	}
	if l.MaxSize > 0 && l.size > 0 && l.size+int64(len(b)) > l.MaxSize {
		if err := l.rotateLocked(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(b)
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("audit log %s: %w", l.path, err)
	}
	return nil
}

// Close closes the file; later appends fail.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Query selects records for Read.
type Query struct {
	Since time.Time // only records at or after Since (zero: all)
	Who   string    // only this token's (empty: all)
	Limit int       // at most the Limit newest (0: all)
}

// Read returns the records q selects, oldest first (the rotated file's,
// then the current one's), and how many damaged lines it passed over.
func (l *Log) Read(q Query) (api.AuditList, error) {
	out := api.AuditList{Items: []api.AuditRecord{}}
	if err := readFile(l.path+".1", q, &out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return out, err
	}
	if err := readFile(l.path, q, &out); err != nil {
		return out, err
	}
	if q.Limit > 0 && len(out.Items) > q.Limit {
		out.Items = out.Items[len(out.Items)-q.Limit:]
	}
	return out, nil
}

// readFile adds the records of the file at path that q selects to out.
func readFile(path string, q Query, out *api.AuditList) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), maxLine)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var rec api.AuditRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			out.Skipped++
			continue
		}
		if rec.Time.Before(q.Since) || (q.Who != "" && rec.Who != q.Who) {
			continue
		}
		out.Items = append(out.Items, rec)
		if q.Limit > 0 && len(out.Items) > 2*q.Limit {
			// Keep memory bounded on a long log: only the newest count.
			out.Items = append(out.Items[:0], out.Items[len(out.Items)-q.Limit:]...)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("audit log %s: %w", path, err)
	}
	return nil
}
