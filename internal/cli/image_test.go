package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

// runImage runs `govisor image ARGS...` in-process and returns its stdout.
func runImage(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := NewImageCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runImage(t, args...)
	if err != nil {
		t.Fatalf("image %v: %v", args, err)
	}
	return out
}

func exitCode(err error) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	if err != nil {
		return 1
	}
	return 0
}

// writeSparse fills a raw file with random sparse data and returns it.
func writeSparse(t *testing.T, path string, size int64) []byte {
	t.Helper()
	r := rand.New(rand.NewSource(9))
	ref := make([]byte, size)
	for i := 0; i < 20; i++ {
		off := r.Int63n(size - 70000)
		r.Read(ref[off : off+1+r.Int63n(70000)])
	}
	if err := os.WriteFile(path, ref, 0o644); err != nil {
		t.Fatal(err)
	}
	return ref
}

func readImg(t *testing.T, path string) []byte {
	t.Helper()
	img, err := diskimage.Open(path, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	b := make([]byte, img.VirtualSize())
	if _, err := img.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestImageCreateInfo(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	mustRun(t, "create", "-f", "qcow2", base, "1G")
	top := filepath.Join(dir, "top.qcow2")
	mustRun(t, "create", "-f", "qcow2", "--backing", "base.qcow2", "-o", "compat=0.10,cluster_size=4K", top)
	out := mustRun(t, "info", "--json", top)
	var info struct {
		Filename string `json:"filename"`
		diskimage.Info
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info JSON %q: %v", out, err)
	}
	if info.Format != "qcow2" || info.Subformat != "v2" || info.VirtualSize != 1<<30 || info.ClusterSize != 4096 ||
		info.BackingFile != "base.qcow2" || len(info.BackingChain) != 1 {
		t.Fatalf("info: %+v", info)
	}
	human := mustRun(t, "info", base)
	if !strings.Contains(human, "virtual size: 1 GiB (1073741824 bytes)") || !strings.Contains(human, "file format: qcow2") {
		t.Fatalf("info output:\n%s", human)
	}
}

func TestImageSizes(t *testing.T) {
	cases := []struct {
		in   string
		want int64
	}{
		{"512", 512}, {"4K", 4096}, {"10M", 10 << 20}, {"2G", 2 << 30}, {"1T", 1 << 40}, {"1.5G", 3 << 29},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		p := filepath.Join(dir, tc.in+".raw")
		mustRun(t, "create", "-f", "raw", p, tc.in)
		st, _ := os.Stat(p)
		if st.Size() != tc.want {
			t.Fatalf("%s: size %d, want %d", tc.in, st.Size(), tc.want)
		}
	}
	if _, err := runImage(t, "create", "-f", "raw", filepath.Join(dir, "x"), "12Q"); err == nil {
		t.Fatal("bad size accepted")
	}
}

func TestImageErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown create format", []string{"create", "-f", "foo", filepath.Join(dir, "a"), "1M"}, `unknown format "foo": use one of raw, qcow2`},
		{"unknown convert format", []string{"convert", "-O", "foo", "/etc/hostname", filepath.Join(dir, "b")}, `unknown format "foo"`},
		{"missing info", []string{"info", filepath.Join(dir, "nope.qcow2")}, "nope.qcow2: no such file"},
		{"missing convert", []string{"convert", "-O", "qcow2", filepath.Join(dir, "nope"), filepath.Join(dir, "c")}, "no such file"},
		{"missing backing", []string{"create", "-f", "qcow2", "-b", "nope", filepath.Join(dir, "d")}, "backing file"},
		{"raw check", []string{"check", "/etc/hostname"}, "no metadata to check"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runImage(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	for _, f := range []string{"a", "b", "c", "d"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Fatalf("failed command left %s behind", f)
		}
	}
}

func TestImageConvertRoundTrip(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	ref := writeSparse(t, src, 9<<20+512)
	cases := []struct {
		name string
		args []string
	}{
		{"qcow2", []string{"-O", "qcow2"}},
		{"qcow2-v2-compressed", []string{"-O", "qcow2", "-o", "compat=0.10,compress", "-W", "3"}},
		{"qcow2-zstd", []string{"-O", "qcow2", "-c", "-o", "compression_type=zstd", "-p"}},
		{"raw", []string{"-f", "raw", "-O", "raw", "-W", "1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".img")
			mustRun(t, append(append([]string{"convert"}, tc.args...), src, out)...)
			if !bytes.Equal(readImg(t, out), ref) {
				t.Fatal("output differs from input")
			}
			back := filepath.Join(dir, tc.name+".back.raw")
			mustRun(t, "convert", "-O", "raw", out, back)
			got, _ := os.ReadFile(back)
			if !bytes.Equal(got, ref) {
				t.Fatal("converting back differs")
			}
			if exec.Command("qemu-img", "--version").Run() == nil {
				if b, err := exec.Command("qemu-img", "compare", src, out).CombinedOutput(); err != nil {
					t.Fatalf("qemu-img compare: %v\n%s", err, b)
				}
			}
		})
	}
}

// TestImageConvertFailureRemovesOutput converts a source whose compressed
// cluster is garbage: the error must leave no output file behind.
func TestImageConvertFailureRemovesOutput(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	writeSparse(t, src, 2<<20)
	comp := filepath.Join(dir, "c.qcow2")
	mustRun(t, "convert", "-O", "qcow2", "-c", src, comp)
	b, _ := os.ReadFile(comp)
	// Overwrite the compressed data (after the metadata) with garbage.
	for i := 5 * 65536; i < len(b); i++ {
		b[i] = 0xff
	}
	os.WriteFile(comp, b, 0o644)
	out := filepath.Join(dir, "out.raw")
	if _, err := runImage(t, "convert", "-O", "raw", comp, out); err == nil {
		t.Fatal("convert of a corrupt image succeeded")
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("failed convert left its output behind")
	}
}

func TestImageCheckExitCodesAndRepair(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	writeSparse(t, src, 4<<20)
	img := filepath.Join(dir, "a.qcow2")
	mustRun(t, "convert", "-O", "qcow2", "-o", "cluster_size=4K", src, img)
	if out, err := runImage(t, "check", img); err != nil || !strings.Contains(out, "No errors") {
		t.Fatalf("clean image: %v\n%s", err, out)
	}
	// Leak: append a cluster nothing references and give it refcount 1.
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	st, _ := f.Stat()
	end := st.Size()
	f.Truncate(end + 4096)
	f.Close()
	raw, _ := os.ReadFile(img)
	// Refcount table is at cluster 1 (qcow2 create layout); its block at
	// cluster 2: set the refcount of the appended cluster to 1.
	cl := end / 4096
	rbOff := int64(2*4096) + 2*cl
	raw[rbOff], raw[rbOff+1] = 0, 1
	os.WriteFile(img, raw, 0o644)
	out, err := runImage(t, "check", "--json", img)
	if exitCode(err) != 3 {
		t.Fatalf("leak: exit %d (%v), want 3\n%s", exitCode(err), err, out)
	}
	var res diskimage.CheckResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Leaks != 1 {
		t.Fatalf("leak JSON %q: %v", out, err)
	}
	// Corruption: drop a referenced cluster's refcount to zero.
	raw[2*4096+2*3], raw[2*4096+2*3+1] = 0, 0 // cluster 3 is the L1 table
	os.WriteFile(img, raw, 0o644)
	if _, err := runImage(t, "check", img); exitCode(err) != 2 {
		t.Fatalf("corruption: exit %d (%v), want 2", exitCode(err), err)
	}
	out, err = runImage(t, "check", "--repair", img)
	if err != nil {
		t.Fatalf("repair: %v\n%s", err, out)
	}
	if out, err := runImage(t, "check", img); err != nil {
		t.Fatalf("after repair: %v\n%s", err, out)
	}
	if exec.Command("qemu-img", "--version").Run() == nil {
		if b, err := exec.Command("qemu-img", "check", img).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img check after repair: %v\n%s", err, b)
		}
	}
}

func TestImageResize(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"qcow2", "raw"} {
		p := filepath.Join(dir, "r."+f)
		mustRun(t, "create", "-f", f, p, "1M")
		mustRun(t, "resize", p, "+1G")
		out := mustRun(t, "info", "--json", p)
		var info diskimage.Info
		json.Unmarshal([]byte(out), &info)
		if info.VirtualSize != 1<<30+1<<20 {
			t.Fatalf("%s: size %d after resize", f, info.VirtualSize)
		}
	}
}
