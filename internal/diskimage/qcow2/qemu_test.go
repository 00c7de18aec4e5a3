package qcow2

import (
	"bytes"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

// Interop tests against qemu-img/qemu-io (installed by scripts/deps.sh test).

func needQemu(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("SKIPPING qemu interop test: %s not found (run scripts/deps.sh test)", tool)
	}
	return p
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// sparseRaw writes a raw file of size bytes with random runs of data and
// zeros and returns its content.
func sparseRaw(t *testing.T, path string, size int64, seed int64) []byte {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	ref := make([]byte, size)
	for _, w := range randomWrites(r, size, 40, 200<<10) {
		copy(ref[w.off:], w.data)
	}
	// Some compressible runs too.
	for i := 0; i < 8; i++ {
		off := r.Int63n(size - 100000)
		copy(ref[off:], bytes.Repeat([]byte("govisor "), 12000))
	}
	if err := os.WriteFile(path, ref, 0o644); err != nil {
		t.Fatal(err)
	}
	return ref
}

func readImage(t *testing.T, path string) []byte {
	t.Helper()
	img, err := diskimage.Open(path, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer img.Close()
	return readAll(t, img)
}

func TestQemuImagesReadIdentically(t *testing.T) {
	qimg := needQemu(t, "qemu-img")
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	ref := sparseRaw(t, src, 12<<20+4096, 7)
	cases := []struct {
		name string
		args []string
	}{
		{"v2", []string{"-o", "compat=0.10"}},
		{"v3", []string{"-o", "compat=1.1"}},
		{"v3-512", []string{"-o", "cluster_size=512"}},
		{"v3-2M", []string{"-o", "cluster_size=2M"}},
		{"zlib", []string{"-c"}},
		{"v2-zlib", []string{"-c", "-o", "compat=0.10,cluster_size=4k"}},
		{"zstd", []string{"-c", "-o", "compression_type=zstd"}},
		{"extended-l2", []string{"-o", "extended_l2=on,cluster_size=128k"}},
		{"refbits8", []string{"-o", "refcount_bits=8"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".qcow2")
			run(t, qimg, append(append([]string{"convert", "-O", "qcow2"}, tc.args...), src, out)...)
			if got := readImage(t, out); !bytes.Equal(got, ref) {
				t.Fatal("govisor read of qemu-img image differs from the source")
			}
			mustCheck(t, out)
		})
	}
}

// TestQemuChainZeroAndSubclusters builds an overlay chain with qemu-io
// writes (data, zero clusters, partial subclusters) and compares govisor's
// read with qemu-img convert -O raw.
func TestQemuChainZeroAndSubclusters(t *testing.T) {
	qimg := needQemu(t, "qemu-img")
	qio := needQemu(t, "qemu-io")
	cases := []struct{ name, opts string }{
		{"v2", "compat=0.10"},
		{"v3", "compat=1.1"},
		{"extended-l2", "extended_l2=on,cluster_size=64k"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "src.raw")
			sparseRaw(t, src, 8<<20, 3)
			base := filepath.Join(dir, "base.qcow2")
			run(t, qimg, "convert", "-O", "qcow2", src, base)
			sub := filepath.Join(dir, "sub")
			os.Mkdir(sub, 0o755)
			mid := filepath.Join(sub, "mid.qcow2")
			// A relative backing name, resolved against the overlay's directory.
			run(t, qimg, "create", "-f", "qcow2", "-o", tc.opts, "-b", "../base.qcow2", "-F", "qcow2", mid)
			run(t, qio, "-c", "write -P 0x5a 100k 300k", "-c", "write -P 0x11 3000k 1k", mid)
			top := filepath.Join(dir, "top.qcow2")
			run(t, qimg, "create", "-f", "qcow2", "-o", tc.opts, "-b", "sub/mid.qcow2", "-F", "qcow2", top, "10M")
			run(t, qio, "-c", "write -P 0x77 4k 8k", "-c", "write -P 0x33 9M 500k", top)
			if tc.opts != "compat=0.10" {
				run(t, qio, "-c", "write -z 128k 256k", "-c", "write -z 2M 64k", top)
			}
			want := filepath.Join(dir, "want.raw")
			run(t, qimg, "convert", "-O", "raw", top, want)
			exp, err := os.ReadFile(want)
			if err != nil {
				t.Fatal(err)
			}
			if got := readImage(t, top); !bytes.Equal(got, exp) {
				t.Fatal("govisor read of the chain differs from qemu-img convert -O raw")
			}
			info, err := diskimage.InfoOf(top, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(info.BackingChain) != 2 {
				t.Fatalf("backing chain %v, want 2 images", info.BackingChain)
			}
		})
	}
}

// TestGovisorImagesPassQemuCheck writes images with govisor and has
// qemu-img check and compare them.
func TestGovisorImagesPassQemuCheck(t *testing.T) {
	qimg := needQemu(t, "qemu-img")
	cases := []struct {
		name     string
		opts     map[string]string
		compress bool
	}{
		{"v2", map[string]string{"compat": "0.10"}, false},
		{"v3-512", map[string]string{"cluster_size": "512"}, false},
		{"v3-64k", nil, false},
		{"v3-2M", map[string]string{"cluster_size": "2M"}, false},
		{"v3-refbits2", map[string]string{"refcount_bits": "2", "cluster_size": "4k"}, false},
		{"v3-lazy", map[string]string{"lazy_refcounts": "on"}, false},
		{"v3-refcount-table-growth", map[string]string{"cluster_size": "512", "refcount_bits": "64"}, false},
		{"zlib", nil, true},
		{"zlib-v2-4k", map[string]string{"compat": "0.10", "cluster_size": "4k"}, true},
		{"zstd", map[string]string{"compression_type": "zstd"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			size := int64(6<<20 + 512)
			r := rand.New(rand.NewSource(11))
			ref := make([]byte, size)
			path := filepath.Join(dir, "g.qcow2")
			img, err := diskimage.Create(path, "qcow2", size, diskimage.CreateOptions{Options: tc.opts})
			if err != nil {
				t.Fatal(err)
			}
			m := img.(*Image)
			if tc.compress {
				for off := int64(0); off < size; off += m.cs {
					n := min(m.cs, size-off)
					if r.Intn(3) == 0 {
						continue
					}
					d := bytes.Repeat([]byte{byte(r.Intn(256)), 1, 2, 3}, int(n/4)+1)[:n]
					if r.Intn(4) == 0 {
						r.Read(d)
					}
					copy(ref[off:], d)
					if err := m.WriteCompressed(d, off); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tc.compress {
				ncomp := 0
				for vc := uint64(0); vc < uint64(size/m.cs); vc++ {
					m.mu.Lock()
					e, _, _ := m.lookup(vc)
					m.mu.Unlock()
					if e&flagCompressed != 0 {
						ncomp++
					}
				}
				if ncomp == 0 {
					t.Fatal("no cluster was stored compressed")
				}
			}
			ws := randomWrites(r, size, 50, 100<<10)
			for _, w := range ws {
				if _, err := img.WriteAt(w.data, w.off); err != nil {
					t.Fatal(err)
				}
			}
			apply(ref, ws)
			if tc.name == "v3-refcount-table-growth" && m.h.rtOff == uint64(m.cs) {
				t.Fatal("refcount table did not grow")
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			raw := filepath.Join(dir, "ref.raw")
			os.WriteFile(raw, ref, 0o644)
			run(t, qimg, "check", path)
			run(t, qimg, "compare", "-f", "raw", "-F", "qcow2", raw, path)
		})
	}
}

func TestGovisorChainPassesQemuCompare(t *testing.T) {
	qimg := needQemu(t, "qemu-img")
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	ref := sparseRaw(t, src, 4<<20, 5)
	base := filepath.Join(dir, "base.qcow2")
	run(t, qimg, "convert", "-O", "qcow2", "-o", "cluster_size=4k", src, base)
	top := filepath.Join(dir, "top.qcow2")
	img, err := diskimage.Create(top, "qcow2", 5<<20, diskimage.CreateOptions{BackingFile: "base.qcow2", BackingFormat: "qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	full := append(ref, make([]byte, 1<<20)...)
	ws := randomWrites(rand.New(rand.NewSource(2)), 5<<20, 30, 50<<10)
	for _, w := range ws {
		if _, err := img.WriteAt(w.data, w.off); err != nil {
			t.Fatal(err)
		}
	}
	apply(full, ws)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "want.raw")
	os.WriteFile(want, full, 0o644)
	run(t, qimg, "check", top)
	run(t, qimg, "compare", "-f", "raw", want, top)
}

func TestResizedImagePassesQemuCheck(t *testing.T) {
	qimg := needQemu(t, "qemu-img")
	path := newImage(t, map[string]string{"cluster_size": "512"}, 1<<20)
	img, err := Open(path, diskimage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.(*Image).Resize(40 << 20); err != nil {
		t.Fatal(err)
	}
	img.WriteAt([]byte("end"), 40<<20-3)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	run(t, qimg, "check", path)
	out, err := exec.Command(qimg, "info", path).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("40 MiB")) {
		t.Fatalf("qemu-img info after resize: %v\n%s", err, out)
	}
}
