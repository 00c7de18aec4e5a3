package qcow2

import (
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

// memBackend is an in-memory host file that records every write and sync,
// so that a test can rebuild the file as a crash at any point left it.
type memBackend struct {
	mu   sync.Mutex
	data []byte
	ops  []memOp
}

type memOp struct {
	off       int64
	data      []byte
	sync      bool
	flushDone bool // marker: Image.Flush returned
}

func (b *memBackend) ReadAt(p []byte, off int64) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(b.data)) {
		clear(p)
		return len(p), nil
	}
	n := copy(p, b.data[off:])
	clear(p[n:])
	return len(p), nil
}

func (b *memBackend) WriteAt(p []byte, off int64) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ops = append(b.ops, memOp{off: off, data: append([]byte(nil), p...)})
	writeMem(&b.data, p, off)
	return len(p), nil
}

func writeMem(d *[]byte, p []byte, off int64) {
	if end := off + int64(len(p)); end > int64(len(*d)) {
		*d = append(*d, make([]byte, end-int64(len(*d)))...)
	}
	copy((*d)[off:], p)
}

func (b *memBackend) Sync() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ops = append(b.ops, memOp{sync: true})
	return nil
}

func (b *memBackend) Size() (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int64(len(b.data)), nil
}

func (b *memBackend) Close() error { return nil }

// crashImage returns the file after ops[:i] with, from the writes since
// the last sync, only a random subset persisted; and how many Flush calls
// had completed by then.
func crashImage(base []byte, ops []memOp, i int, r *rand.Rand) ([]byte, int) {
	lastSync, flushed := 0, 0
	for j := 0; j < i; j++ {
		if ops[j].sync {
			lastSync = j + 1
		}
		if ops[j].flushDone {
			flushed++
		}
	}
	d := append([]byte(nil), base...)
	for j := 0; j < i; j++ {
		op := ops[j]
		if op.data == nil || (j >= lastSync && r.Intn(2) == 0) {
			continue
		}
		writeMem(&d, op.data, op.off)
	}
	return d, flushed
}

// TestCrashOrdering writes several epochs of non-overlapping guest writes,
// each ended by Flush, then rebuilds the file as a crash at every point of
// the write sequence could leave it (any subset of unsynced writes). Every
// such file must pass check (leaks allowed), read every byte as either its
// value after the last completed Flush or its new value, and never lose a
// flushed write.
func TestCrashOrdering(t *testing.T) {
	cases := []struct {
		name string
		opts map[string]string
		size int64
	}{
		{"v3-4k", map[string]string{"cluster_size": "4096"}, 2 << 20},
		{"v2-512", map[string]string{"compat": "0.10", "cluster_size": "512"}, 1 << 20},
		{"v3-512-table-growth", map[string]string{"cluster_size": "512", "refcount_bits": "64"}, 4 << 20},
		{"v3-lazy", map[string]string{"cluster_size": "4096", "lazy_refcounts": "on"}, 2 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewSource(42))
			p, err := parseCreateOptions(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			mb := &memBackend{}
			if err := format(mb, tc.size, p, diskimage.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			img, err := openBackend(mb, "mem.qcow2", diskimage.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			base := append([]byte(nil), mb.data...)
			baseOps := len(mb.ops)
			refs := [][]byte{make([]byte, tc.size)}
			const slot = 3000
			nslots := int(tc.size / slot)
			for epoch := 0; epoch < 6; epoch++ {
				next := append([]byte(nil), refs[len(refs)-1]...)
				nw := 20
				if tc.name == "v3-512-table-growth" {
					nw = 300 // enough new refcount blocks to grow the table
				}
				for _, s := range r.Perm(nslots)[:nw] {
					d := make([]byte, 1+r.Intn(slot))
					r.Read(d)
					off := int64(s) * slot
					if _, err := img.WriteAt(d, off); err != nil {
						t.Fatal(err)
					}
					copy(next[off:], d)
				}
				if err := img.Flush(); err != nil {
					t.Fatal(err)
				}
				mb.ops = append(mb.ops, memOp{flushDone: true})
				refs = append(refs, next)
			}
			if tc.name == "v3-512-table-growth" && img.h.rtOff == uint64(img.cs) {
				t.Fatalf("the refcount table never moved (end %#x, %d entries): test does not cover table growth", img.hostEnd, len(img.rt))
			}
			ops := mb.ops[baseOps:]
			step := max(1, len(ops)/150)
			for i := 0; i <= len(ops); i += step {
				file, flushed := crashImage(base, ops, i, r)
				if err := verifyCrash(file, refs[flushed], refs[min(flushed+1, len(refs)-1)]); err != nil {
					t.Fatalf("crash after op %d of %d (%d flushes done): %v", i, len(ops), flushed, err)
				}
			}
		})
	}
}

func verifyCrash(file, old, new []byte) error {
	mb := &memBackend{data: file}
	img, err := openBackend(mb, "crash.qcow2", diskimage.OpenOptions{})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer img.Close()
	res, err := img.Check(false)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if res.Corruptions != 0 {
		return fmt.Errorf("%d corruptions: %v", res.Corruptions, res.Messages)
	}
	got := make([]byte, len(old))
	if _, err := img.ReadAt(got, 0); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	for i := range got {
		if got[i] != old[i] && got[i] != new[i] {
			return fmt.Errorf("byte %d reads %#x, want %#x (flushed) or %#x (new)", i, got[i], old[i], new[i])
		}
	}
	return nil
}
