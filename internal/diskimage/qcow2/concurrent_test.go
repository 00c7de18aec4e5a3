package qcow2

import (
	"bytes"
	"math/rand"
	"path/filepath"
	"sync"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

// TestConcurrentAccess has several goroutines write interleaved pieces of
// the same clusters (so that allocations race), while others read and
// flush; run it with -race. The final content must be every write.
func TestConcurrentAccess(t *testing.T) {
	const (
		size    = 4 << 20
		writers = 6
		seg     = 700 // bytes per piece: pieces of several writers share a cluster
	)
	path := filepath.Join(t.TempDir(), "c.qcow2")
	img, err := diskimage.Create(path, "qcow2", size, diskimage.CreateOptions{Options: map[string]string{"cluster_size": "4096"}})
	if err != nil {
		t.Fatal(err)
	}
	// Shrink the L2 cache so that evictions (and their flushes) happen too.
	img.(*Image).l2.max = 2
	ref := make([]byte, size)
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		r := rand.New(rand.NewSource(int64(g)))
		var offs []int64
		for off := int64(g * seg); off+seg <= size; off += writers * seg {
			offs = append(offs, off)
		}
		r.Shuffle(len(offs), func(i, j int) { offs[i], offs[j] = offs[j], offs[i] })
		for _, off := range offs {
			r.Read(ref[off : off+seg])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, off := range offs {
				if _, err := img.WriteAt(ref[off:off+seg], off); err != nil {
					t.Error(err)
					return
				}
				if i%200 == 0 {
					if err := img.Flush(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	stop := make(chan struct{})
	var rg sync.WaitGroup
	for g := 0; g < 2; g++ {
		rg.Add(1)
		go func() {
			defer rg.Done()
			buf := make([]byte, 20000)
			r := rand.New(rand.NewSource(99))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := img.ReadAt(buf, r.Int63n(size-int64(len(buf)))); err != nil {
					t.Error(err)
					return
				}
				img.(diskimage.Mapper).Map(0, size)
			}
		}()
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	if got := readAll(t, img); !bytes.Equal(got, ref) {
		t.Fatal("content after concurrent writes differs")
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, path)
}
