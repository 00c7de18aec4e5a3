package vhdx

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

type logWrite struct {
	off  uint64
	data []byte // 4 KiB; nil for a zero descriptor of zeroLen bytes
	zero uint64
}

// buildEntry encodes a log entry ([MS-VHDX] 2.3.1) independently of the
// parser: header, descriptors, data sectors, CRC-32C over the whole entry.
func buildEntry(guid GUID, seq uint64, tail uint32, flushed, last uint64, ws []logWrite) []byte {
	le := binary.LittleEndian
	ndata := 0
	for _, w := range ws {
		if w.data != nil {
			ndata++
		}
	}
	descSecs := (64 + 32*len(ws) + 4095) / 4096
	b := make([]byte, (descSecs+ndata)*4096)
	le.PutUint32(b[0:], logEntrySig)
	le.PutUint32(b[8:], uint32(len(b)))
	le.PutUint32(b[12:], tail)
	le.PutUint64(b[16:], seq)
	le.PutUint32(b[24:], uint32(len(ws)))
	copy(b[32:], guid[:])
	le.PutUint64(b[48:], flushed)
	le.PutUint64(b[56:], last)
	ds := descSecs * 4096
	for i, w := range ws {
		d := b[64+32*i:]
		le.PutUint64(d[16:], w.off)
		le.PutUint64(d[24:], seq)
		if w.data == nil {
			le.PutUint32(d[0:], descZeroSig)
			le.PutUint64(d[8:], w.zero)
			continue
		}
		le.PutUint32(d[0:], descDataSig)
		copy(d[4:8], w.data[4092:])
		copy(d[8:16], w.data[:8])
		s := b[ds : ds+4096]
		ds += 4096
		le.PutUint32(s[0:], dataSig)
		le.PutUint32(s[4:], uint32(seq>>32))
		copy(s[8:4092], w.data[8:4092])
		le.PutUint32(s[4092:], uint32(seq))
	}
	le.PutUint32(b[4:], crc32c(b, 4))
	return b
}

// dirtyImage makes a fixed image with a pending log: entry 5 (tail 0)
// writes a sector of 0xAB at guest offset 8 KiB and zeros guest 64 KiB..72
// KiB; entry 6 (tail 0) writes a sector of 0xCD at guest 12 KiB. A stale
// entry with another GUID follows them. It returns the path and the
// expected guest contents after replay.
func dirtyImage(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	path := filepath.Join(dir, "dirty.vhdx")
	img, err := Create(path, 4*mib, CreateOptions{Fixed: true, BlockSize: mib})
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{0x11}, 4*mib)
	if _, err := img.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	base := img.blockOffset(0) // fixed: guest offset x is at base+x
	img.Close()
	st, _ := os.Stat(path)
	fsz := uint64(st.Size())
	a := bytes.Repeat([]byte{0xab}, 4096)
	c := bytes.Repeat([]byte{0xcd}, 4096)
	a[0], a[4095] = 1, 2 // leading and trailing bytes travel in the descriptor
	guid := GUID{1, 2, 3}
	e1 := buildEntry(guid, 5, 0, fsz, fsz, []logWrite{{off: uint64(base) + 8192, data: a}, {off: uint64(base) + 65536, zero: 8192}})
	e2 := buildEntry(guid, 6, 0, fsz, fsz, []logWrite{{off: uint64(base) + 12288, data: c}})
	stale := buildEntry(GUID{9}, 7, 0, fsz, fsz, []logWrite{{off: uint64(base), data: c}})
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	defer f.Close()
	f.WriteAt(e1, newLogOff)
	f.WriteAt(e2, newLogOff+int64(len(e1)))
	f.WriteAt(stale, newLogOff+int64(len(e1)+len(e2)))
	h := &Header{SequenceNumber: 10, Version: 1, LogGUID: guid, LogLength: newLogLen, LogOffset: newLogOff}
	f.WriteAt(h.Marshal(), header1Off)
	copy(want[8192:], a)
	clear(want[65536 : 65536+8192])
	copy(want[12288:], c)
	return path, want
}

func TestLogReplay(t *testing.T) {
	path, want := dirtyImage(t, t.TempDir())
	// A read-only open replays in memory and leaves the file alone.
	before, _ := os.ReadFile(path)
	rgot, rimg := readAll(t, path, true)
	if !bytes.Equal(rgot, want) {
		t.Fatal("read-only replay differs")
	}
	if !rimg.Info().Dirty {
		t.Fatal("info does not report the pending log")
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("read-only open modified the file")
	}
	got, img := readAll(t, path, false)
	if !bytes.Equal(got, want) {
		t.Fatal("replayed contents differ")
	}
	if img.hdr.LogGUID != (GUID{}) {
		t.Fatal("LogGuid not cleared in memory")
	}
	img.Close()
	// Both headers on disk now have an empty log and the current one wins.
	b, _ := os.ReadFile(path)
	h, _, err := pickHeader(b[header1Off:], b[header2Off:])
	if err != nil || h.LogGUID != (GUID{}) || h.SequenceNumber <= 10 {
		t.Fatalf("header after replay %+v %v", h, err)
	}
	got2, _ := readAll(t, path, true)
	if !bytes.Equal(got2, want) {
		t.Fatal("contents differ after reopen")
	}
}

func TestLogSequenceSelection(t *testing.T) {
	guid := GUID{7}
	w := logWrite{off: 0, data: make([]byte, 4096)}
	for _, tc := range []struct {
		name    string
		entries [][]byte
		want    []uint64
	}{
		{"single", [][]byte{buildEntry(guid, 3, 0, 0, 0, []logWrite{w})}, []uint64{3}},
		{"chain", [][]byte{buildEntry(guid, 3, 0, 0, 0, []logWrite{w}), buildEntry(guid, 4, 0, 0, 0, nil)}, []uint64{3, 4}},
		{"tail moved", [][]byte{buildEntry(guid, 3, 0, 0, 0, []logWrite{w}), buildEntry(guid, 4, 8192, 0, 0, nil)}, []uint64{4}},
		{"gap", [][]byte{buildEntry(guid, 3, 0, 0, 0, []logWrite{w}), buildEntry(guid, 5, 0, 0, 0, nil)}, []uint64{3}},
	} {
		f, err := os.CreateTemp(t.TempDir(), "log")
		if err != nil {
			t.Fatal(err)
		}
		var off int64
		for _, e := range tc.entries {
			f.WriteAt(e, off)
			off += int64(len(e))
		}
		f.Truncate(mib)
		l := &logReader{f: f, length: mib, guid: guid, budget: 4 * mib}
		seq, err := l.activeSequence()
		var got []uint64
		for _, e := range seq {
			got = append(got, e.seq)
		}
		if err != nil || len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) {
			t.Errorf("%s: sequence %v, want %v (%v)", tc.name, got, tc.want, err)
		}
		f.Close()
	}
}

func TestOverlayOrdering(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "ov")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(bytes.Repeat([]byte{'F'}, 16384))
	o := newOverlay(f, 16384)
	a, b := bytes.Repeat([]byte{'A'}, 4096), bytes.Repeat([]byte{'B'}, 4096)
	o.WriteAt(a, 0)
	o.zero(0, 8192) // drops page A
	o.zero(4096, 8192)
	o.WriteAt(b, 8192) // written after the zero range: survives
	o.extend(20480)
	o.finish()
	got := make([]byte, 20480)
	if n, err := o.ReadAt(got, 0); n != 20480 || err != nil {
		t.Fatalf("read %d %v", n, err)
	}
	want := append(append(append(make([]byte, 8192), b...), bytes.Repeat([]byte{'F'}, 4096)...), make([]byte, 4096)...)
	if !bytes.Equal(got, want) {
		t.Fatal("overlay view differs")
	}
	// Unaligned reads see the same bytes.
	part := make([]byte, 5000)
	o.ReadAt(part, 7000)
	if !bytes.Equal(part, want[7000:12000]) {
		t.Fatal("unaligned overlay read differs")
	}
	if _, err := o.WriteAt([]byte{1}, 3); err == nil {
		t.Fatal("unaligned replay write accepted")
	}
}
