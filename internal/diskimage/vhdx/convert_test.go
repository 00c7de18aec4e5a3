package vhdx_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/convert"
	_ "github.com/govisor/govisor/internal/diskimage/vhd"
	_ "github.com/govisor/govisor/internal/diskimage/vhdx"
	_ "github.com/govisor/govisor/internal/diskimage/vmdk"
)

// TestConvertChain converts random sparse content through every subformat
// the vmdk, vhd and vhdx writers produce, with parallel workers, and checks
// the bytes at the end of the chain.
func TestConvertChain(t *testing.T) {
	dir := t.TempDir()
	const size = 13<<20 + 4096
	want := make([]byte, size)
	r := rand.New(rand.NewPCG(11, 12))
	for range 15 {
		off := r.IntN(size - 200000)
		for i := off; i < off+1+r.IntN(200000); i++ {
			want[i] = byte(r.Uint32())
		}
	}
	steps := []struct{ format, sub string }{
		{"vmdk", "streamOptimized"}, {"vhdx", "dynamic"}, {"vhd", "dynamic"}, {"vmdk", "monolithicSparse"},
		{"vhdx", "fixed"}, {"vhd", "fixed"}, {"vmdk", "streamOptimized"},
	}
	var prev string
	for i, s := range steps {
		p := filepath.Join(dir, s.sub+string(rune('a'+i))+"."+s.format)
		dst, err := diskimage.Create(p, s.format, size, diskimage.CreateOptions{Options: map[string]string{"subformat": s.sub}})
		if err != nil {
			t.Fatal(err)
		}
		if prev == "" {
			if _, err := dst.WriteAt(want, 0); err != nil {
				t.Fatal(err)
			}
		} else {
			src, err := diskimage.Open(prev, diskimage.OpenOptions{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := convert.Convert(context.Background(), src, dst, convert.Options{Workers: 4, ChunkSize: 1 << 20}); err != nil {
				t.Fatalf("%s -> %s/%s: %v", prev, s.format, s.sub, err)
			}
			src.Close()
		}
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
		info, err := diskimage.InfoOf(p, "")
		if err != nil || info.Format != s.format || info.Subformat != s.sub {
			t.Fatalf("%s: info %+v %v", p, info, err)
		}
		prev = p
	}
	img, err := diskimage.Open(prev, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	got := make([]byte, size)
	if _, err := img.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:size], want) {
		t.Fatal("content changed along the conversion chain")
	}
}
