package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// cpuState is a section payload made with the package's Encoder.
type cpuState struct {
	RIP, RSP uint64
	Regs     [16]uint64
	Name     string
}

func (c cpuState) bytes() []byte {
	e := NewEncoder(nil)
	e.U64(c.RIP)
	e.U64(c.RSP)
	for _, r := range c.Regs {
		e.U64(r)
	}
	e.String(c.Name)
	return e.Bytes()
}

func parseCPU(p []byte) (cpuState, error) {
	var c cpuState
	d := NewDecoder(p)
	c.RIP, c.RSP = d.U64(), d.U64()
	for i := range c.Regs {
		c.Regs[i] = d.U64()
	}
	c.Name = d.String("Name", 16)
	return c, d.Finish()
}

// cpuSection reads section name of s as a cpuState.
func cpuSection(s *Snapshot, name string) (uint32, cpuState, error) {
	v, p, err := s.Section(name)
	if err != nil {
		return 0, cpuState{}, err
	}
	c, err := parseCPU(p)
	return v, c, err
}

// makeSnapshot writes a snapshot with two sections and the given regions.
func makeSnapshot(t *testing.T, regions []Region) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "snap")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddSection("dev/uart", 3, []byte("uart-state")); err != nil {
		t.Fatal(err)
	}
	if err := w.AddSection("vcpu/0", 1, cpuState{RIP: 0x1000, RSP: 0x8000, Regs: [16]uint64{1, 2, 3}, Name: "bsp"}.bytes()); err != nil {
		t.Fatal(err)
	}
	if regions != nil {
		if err := w.WriteMemory(regions); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func randomRegions(seed uint64) []Region {
	rng := rand.New(rand.NewPCG(seed, 1))
	low := make([]byte, 64*PageSize)
	high := make([]byte, 32*PageSize)
	for _, b := range [][]byte{low, high} {
		for p := 0; p < len(b); p += PageSize {
			if rng.IntN(3) == 0 {
				for i := p; i < p+PageSize; i += 7 {
					b[i] = byte(rng.Uint32())
				}
			}
		}
	}
	return []Region{{GPA: 0x1_0000_0000, Data: high}, {GPA: 0, Data: low}}
}

func TestRoundTrip(t *testing.T) {
	regions := randomRegions(1)
	dir := makeSnapshot(t, regions)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, p, err := s.Section("dev/uart")
	if err != nil || v != 3 || string(p) != "uart-state" {
		t.Fatalf("dev/uart = %d %q %v", v, p, err)
	}
	if v, cpu, err := cpuSection(s, "vcpu/0"); err != nil || v != 1 || cpu.RIP != 0x1000 || cpu.Regs[2] != 3 || cpu.Name != "bsp" {
		t.Fatalf("vcpu/0 = %d %+v %v", v, cpu, err)
	}
	if _, _, err := s.Section("pit"); !errors.Is(err, ErrNoSection) {
		t.Fatalf("missing section: %v", err)
	}
	info := s.Sections()
	if len(info) != 2 || info[0].Name != "dev/uart" || info[1].Name != "vcpu/0" {
		t.Fatalf("sections %+v", info)
	}
	layout := s.MemoryLayout()
	if len(layout) != 2 || layout[0] != (Range{0, 64 * PageSize}) || layout[1] != (Range{0x1_0000_0000, 32 * PageSize}) {
		t.Fatalf("layout %+v", layout)
	}
	got, unmap, err := s.MapMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer unmap()
	want := map[uint64][]byte{regions[0].GPA: regions[0].Data, regions[1].GPA: regions[1].Data}
	for _, r := range got {
		if !bytes.Equal(r.Data, want[r.GPA]) {
			t.Errorf("region %#x differs after restore", r.GPA)
		}
	}
	if err := unmap(); err != nil {
		t.Fatal(err)
	}
}

func TestNoMemory(t *testing.T) {
	s, err := Open(makeSnapshot(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.MapMemory(); !errors.Is(err, ErrNoMemory) {
		t.Fatalf("MapMemory without memory: %v", err)
	}
}

func TestSparse(t *testing.T) {
	const size = 256 << 20
	data := make([]byte, size)
	// A few scattered non-zero pages in a mostly idle guest.
	for _, p := range []int{0, 1, 1000, 40000, size/PageSize - 1} {
		data[p*PageSize+5] = 0xAB
	}
	dir := makeSnapshot(t, []Region{{GPA: 0, Data: data}})
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, MemoryFile), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size {
		t.Fatalf("memory file is %d bytes, want %d", st.Size, size)
	}
	if allocated := st.Blocks * 512; allocated > 1<<20 {
		t.Fatalf("memory file allocates %d bytes for %d non-zero pages; it is not sparse", allocated, 5)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	regs, unmap, err := s.MapMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer unmap()
	if !bytes.Equal(regs[0].Data, data) {
		t.Fatal("sparse memory differs after restore")
	}
}

func TestMapPrivateLeavesFileAlone(t *testing.T) {
	regions := randomRegions(2)
	dir := makeSnapshot(t, regions)
	memPath := filepath.Join(dir, MemoryFile)
	before, err := os.ReadFile(memPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	regs, unmap, err := s.MapMemory()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range regs {
		for i := range r.Data {
			r.Data[i] ^= 0x5A // the "guest" writes every byte
		}
	}
	if err := unmap(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(memPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("writes through the MAP_PRIVATE mapping reached the memory file")
	}
	// A second restore sees the original memory.
	regs, unmap, err = s.MapMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer unmap()
	for _, r := range regs {
		for _, o := range regions {
			if o.GPA == r.GPA && !bytes.Equal(o.Data, r.Data) {
				t.Fatalf("second restore of %#x differs", r.GPA)
			}
		}
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	dir := makeSnapshot(t, nil)
	if _, err := Create(dir); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Create over an existing snapshot: %v", err)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "snap")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteMemory(randomRegions(3)); err != nil {
		t.Fatal(err)
	}
	// A bad region fails before anything is committed.
	if err := w.AddSection(".memory", 1, nil); !errors.Is(err, ErrBadName) {
		t.Fatalf("reserved name accepted: %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("abort left %v behind", ents)
	}
}

func TestWriterRejects(t *testing.T) {
	tests := []struct {
		name string
		do   func(w *Writer) error
	}{
		{"empty name", func(w *Writer) error { return w.AddSection("", 1, nil) }},
		{"space in name", func(w *Writer) error { return w.AddSection("a b", 1, nil) }},
		{"long name", func(w *Writer) error { return w.AddSection(strings.Repeat("x", 256), 1, nil) }},
		{"duplicate", func(w *Writer) error {
			w.AddSection("pit", 1, nil)
			return w.AddSection("pit", 1, nil)
		}},
		{"unaligned region", func(w *Writer) error { return w.WriteMemory([]Region{{GPA: 0, Data: make([]byte, 100)}}) }},
		{"unaligned gpa", func(w *Writer) error { return w.WriteMemory([]Region{{GPA: 1, Data: make([]byte, PageSize)}}) }},
		{"overlap", func(w *Writer) error {
			return w.WriteMemory([]Region{{GPA: 0, Data: make([]byte, 2*PageSize)}, {GPA: PageSize, Data: make([]byte, PageSize)}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Create(filepath.Join(t.TempDir(), "s"))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			if err := tt.do(w); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// stateBytes builds a valid state file image.
func stateBytes(version uint32, secs ...section) []byte {
	b := appendHeader(nil, version)
	for _, s := range secs {
		b = appendSection(b, s.name, s.version, s.payload)
	}
	return appendTrailer(b, uint32(len(secs)))
}

func TestCorruption(t *testing.T) {
	good := stateBytes(FormatVersion, section{"vcpu/0", 1, []byte("registers")}, section{"pit", 2, []byte("counter")})
	if _, err := parse(good); err != nil {
		t.Fatalf("good file: %v", err)
	}
	flip := func(off int) []byte {
		b := bytes.Clone(good)
		b[off] ^= 1
		return b
	}
	payloadOff := headerSize + sectionFixed + len("vcpu/0")
	bigLen := bytes.Clone(good)
	binary.LittleEndian.PutUint64(bigLen[headerSize+2+len("vcpu/0")+4:], 1<<62)
	tests := []struct {
		name    string
		data    []byte
		want    error
		mention string
	}{
		{"empty", nil, ErrBadMagic, ""},
		{"bad magic", flip(0), ErrBadMagic, ""},
		{"newer version", stateBytes(FormatVersion + 1), ErrVersion, "version 2"},
		{"version zero", stateBytes(0), ErrVersion, ""},
		{"payload bit flip", flip(payloadOff + 2), ErrCorrupt, `"vcpu/0"`},
		{"truncated mid section", good[:payloadOff+3], ErrTruncated, `"vcpu/0"`},
		{"truncated trailer", good[:len(good)-4], ErrTruncated, ""},
		{"no trailer", good[:len(good)-trailerSize], ErrTruncated, ""},
		{"absurd length", bigLen, ErrTruncated, "claims"},
		{"trailer crc", flip(len(good) - 1), ErrCorrupt, "file CRC"},
		{"trailer count", flip(len(good) - 8), ErrCorrupt, "counts"},
		{"garbage after", append(bytes.Clone(good), 0), ErrCorrupt, "after the trailer"},
		{"duplicate", stateBytes(1, section{"a", 1, nil}, section{"a", 1, nil}), ErrCorrupt, "twice"},
		{"bad memory index", stateBytes(1, section{memorySection, 1, []byte{1, 2, 3}}), ErrCorrupt, "memory index"},
		{"memory index beyond file", stateBytes(1, section{memorySection, 1,
			encodeIndex([]memRegion{{GPA: 0, Size: 2 * PageSize, Offset: 0}}, PageSize)}), ErrCorrupt, "exceeds"},
		{"overlapping regions", stateBytes(1, section{memorySection, 1,
			encodeIndex([]memRegion{{0, 2 * PageSize, 0}, {PageSize, PageSize, 2 * PageSize}}, 4*PageSize)}), ErrCorrupt, "overlap"},
		{"memory index version", stateBytes(1, section{memorySection, 9, encodeIndex(nil, 0)}), ErrVersion, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(tt.data)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

func TestVersionErrorNamesBoth(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, StateFile), stateBytes(7), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir)
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "version 7") || !strings.Contains(err.Error(), "1 to 1") {
		t.Fatalf("err = %v", err)
	}
}

func TestOpenTruncatedMemoryFile(t *testing.T) {
	dir := makeSnapshot(t, randomRegions(4))
	if err := os.Truncate(filepath.Join(dir, MemoryFile), PageSize); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrTruncated) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	f.Add(stateBytes(1, section{"vcpu/0", 1, []byte("regs")}))
	f.Add(stateBytes(1, section{memorySection, 1, encodeIndex([]memRegion{{0, PageSize, 0}}, PageSize)}))
	f.Add(stateBytes(2))
	f.Add([]byte(stateMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parse(data)
		if err != nil {
			return
		}
		for _, info := range s.Sections() {
			if _, p, err := s.Section(info.Name); err != nil || len(p) != info.Size {
				t.Fatalf("section %q listed but not readable: %v", info.Name, err)
			}
		}
		for _, r := range s.regions {
			if r.Offset+r.Size > s.memSize {
				t.Fatalf("region %+v beyond memory file %d", r, s.memSize)
			}
		}
	})
}

// BenchmarkRestore measures Open plus MapMemory of a 1 GiB guest with 8 MiB
// of data: the work between "restore" and the first guest instruction.
func BenchmarkRestore(b *testing.B) {
	data := make([]byte, 1<<30)
	for p := 0; p < 8<<20; p += PageSize {
		data[p*128%len(data)] = 1
	}
	dir := filepath.Join(b.TempDir(), "snap")
	w, err := Create(dir)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.AddSection("vcpu/0", 1, make([]byte, 4096)); err != nil {
		b.Fatal(err)
	}
	if err := w.WriteMemory([]Region{{GPA: 0, Data: data}}); err != nil {
		b.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		s, err := Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		regs, unmap, err := s.MapMemory()
		if err != nil {
			b.Fatal(err)
		}
		if regs[0].Data[0] != 1 {
			b.Fatal("first page lost")
		}
		unmap()
	}
}

func TestStateRoundTrip(t *testing.T) {
	st := NewState()
	if err := st.AddSection("vcpu/0", 2, cpuState{RIP: 0xfff0, Name: "bsp"}.bytes()); err != nil {
		t.Fatal(err)
	}
	if err := st.AddSection("dev/virtio-blk/0", 1, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddSection(".memory", 1, nil); !errors.Is(err, ErrBadName) {
		t.Fatalf("reserved name accepted: %v", err)
	}
	first := st.Bytes()
	if err := st.AddSection("clock", 1, []byte("tsc")); err != nil {
		t.Fatal(err)
	}
	s, err := Parse(st.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if v, cpu, err := cpuSection(s, "vcpu/0"); err != nil || v != 2 || cpu.RIP != 0xfff0 {
		t.Fatalf("vcpu/0: %d %+v %v", v, cpu, err)
	}
	if _, p, err := s.Section("clock"); err != nil || string(p) != "tsc" {
		t.Fatalf("clock: %q %v", p, err)
	}
	if _, _, err := s.MapMemory(); !errors.Is(err, ErrNoMemory) {
		t.Fatalf("MapMemory of a State: %v", err)
	}
	// The earlier image is complete in itself.
	s1, err := Parse(first)
	if err != nil || len(s1.Sections()) != 2 {
		t.Fatalf("first image: %v %+v", err, s1)
	}
	bad := bytes.Clone(first)
	bad[len(bad)-trailerSize-1] ^= 0xff
	if _, err := Parse(bad); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "dev/virtio-blk/0") {
		t.Fatalf("corrupt state: %v", err)
	}
}
