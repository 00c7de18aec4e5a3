// Command mkinput writes a raw benchmark input for bench/convert: a sparse
// file (data runs separated by holes) or a dense one (every block written,
// half random and half compressible text).
package main

import (
	"flag"
	"fmt"
	"math/rand"
	"os"

	"github.com/govisor/govisor/internal/diskimage"
)

func main() {
	kind := flag.String("kind", "dense", "sparse or dense")
	sizeStr := flag.String("size", "1G", "virtual size")
	out := flag.String("o", "", "output file")
	flag.Parse()
	size, err := diskimage.ParseSize(*sizeStr)
	if err != nil || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: mkinput -kind sparse|dense -size 1G -o FILE")
		os.Exit(2)
	}
	if err := write(*out, *kind, size); err != nil {
		fmt.Fprintln(os.Stderr, "mkinput:", err)
		os.Exit(1)
	}
}

func write(path, kind string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	r := rand.New(rand.NewSource(1))
	const block = 1 << 20
	buf := make([]byte, block)
	text := []byte("govisor bench: the quick brown fox jumps over the lazy dog 0123456789\n")
	for off := int64(0); off < size; off += block {
		// Sparse: one 1 MiB data run in eight, i.e. 12.5% allocated.
		if kind == "sparse" && r.Intn(8) != 0 {
			continue
		}
		n := min(block, size-off)
		b := buf[:n]
		for i := int64(0); i < n; i += 64 << 10 {
			seg := b[i:min(n, i+64<<10)]
			if r.Intn(2) == 0 {
				r.Read(seg)
			} else {
				for j := 0; j < len(seg); j += len(text) {
					copy(seg[j:], text)
				}
			}
		}
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
	}
	return f.Sync()
}
