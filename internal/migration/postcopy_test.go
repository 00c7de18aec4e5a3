package migration

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// pcDest is a post-copy destination over fakeDest: missing pages read as
// poison until placed, and a "vCPU" goroutine touches missing pages as a
// faulting guest would: it requests each and waits for it.
type pcDest struct {
	memOnlyDest
	mu          sync.Mutex
	cond        *sync.Cond
	missing     map[uint64]bool
	touched     []uint64 // pages the vCPU waited for
	requested   int
	placedTwice int
	placed      int
	over        bool
	onPlace     func(n int) // called with the count of pages placed so far
	ended       chan error
	touch       int // how many missing pages the vCPU touches
	vcpuDone    chan struct{}
}

func newPCDest(d *fakeDest, touch int) *pcDest {
	p := &pcDest{memOnlyDest: memOnlyDest{d}, ended: make(chan error, 1), touch: touch, vcpuDone: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *pcDest) ArmPostCopy(missing [][]uint64, request func(gpa uint64)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.missing = map[uint64]bool{}
	var order []uint64
	for i, bm := range missing {
		r := p.d.regions[i]
		for pg := uint64(0); pg < r.Size/PageSize; pg++ {
			if bm[pg/64]&(1<<(pg%64)) != 0 {
				gpa := r.GPA + pg*PageSize
				p.missing[gpa] = true
				b, _ := find(p.d.regions, p.d.mem, gpa, PageSize)
				for k := range b {
					b[k] = 0xDB // the stale copy is gone
				}
				order = append(order, gpa)
			}
		}
	}
	// The vCPU touches the missing pages from the top down, the opposite
	// of the source's push order, so it really has to ask for them.
	go func() {
		defer close(p.vcpuDone)
		for k := len(order) - 1; k >= 0 && len(order)-k <= p.touch; k-- {
			gpa := order[k]
			p.mu.Lock()
			if p.missing[gpa] {
				p.requested++
				p.touched = append(p.touched, gpa)
				p.mu.Unlock()
				request(gpa)
				p.mu.Lock()
				for p.missing[gpa] && !p.over {
					p.cond.Wait()
				}
			}
			p.mu.Unlock()
		}
	}()
	return nil
}

func (p *pcDest) PlacePage(gpa uint64, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.missing[gpa] {
		p.placedTwice++
		return nil
	}
	b, err := find(p.d.regions, p.d.mem, gpa, PageSize)
	if err != nil {
		return err
	}
	copy(b, data)
	delete(p.missing, gpa)
	p.placed++
	if p.onPlace != nil {
		p.onPlace(p.placed)
	}
	p.cond.Broadcast()
	return nil
}

func (p *pcDest) EndPostCopy(err error) {
	p.mu.Lock()
	p.over = true
	p.cond.Broadcast()
	p.mu.Unlock()
	p.ended <- err
}

func TestPostCopy(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		t.Run(map[bool]string{false: "pipe", true: "tcp"}[tcp], func(t *testing.T) {
			v := newFakeVM(11, testRegions)
			d := newPCDest(newFakeDest(testRegions), 8)
			sc, dc := connPair(t, tcp)
			// A guest that always dirties pages and a downtime no dirty round
			// fits: the switch comes after the full copy.
			src := &steadyGuest{fakeVM: v, rng: rand.New(rand.NewPCG(3, 4))}
			stats, r, err := migrate(t, context.Background(), sc, dc, src, v, d, Options{PostCopy: true, MaxDowntime: time.Nanosecond})
			if err != nil || r.err != nil {
				t.Fatalf("Send: %v; Receive: %v", err, r.err)
			}
			if !stats.PostCopy {
				t.Fatalf("no switch to post-copy: %+v", stats)
			}
			if endErr := <-d.ended; endErr != nil {
				t.Fatalf("EndPostCopy(%v)", endErr)
			}
			<-d.vcpuDone
			if !stats.PostCopy || stats.PostCopyPages == 0 || stats.Rounds != 1 {
				t.Fatalf("stats %+v: want a post-copy switch after the full copy", stats)
			}
			if len(d.missing) != 0 || d.placedTwice != 0 {
				t.Fatalf("%d pages still missing, %d placed twice", len(d.missing), d.placedTwice)
			}
			// A requested page may also have been pushed before the request
			// was read: the source serves at most what was asked.
			if d.requested == 0 || stats.PostCopyRequested > uint64(d.requested) {
				t.Fatalf("destination requested %d pages, source served %d on request", d.requested, stats.PostCopyRequested)
			}
			sameMemory(t, v, d.d)
			t.Logf("%+v; the vCPU waited on %d pages", stats, d.requested)
			if !v.paused || v.resumes != 0 || string(d.d.committed) != string(v.state) {
				t.Fatalf("source paused=%v resumes=%d; committed %q", v.paused, v.resumes, d.d.committed)
			}
		})
	}
}

func TestPostCopyConnectionLost(t *testing.T) {
	v := newFakeVM(12, testRegions)
	d := newPCDest(newFakeDest(testRegions), 0)
	sc, dc := connPair(t, false)
	// Cut the link under the destination as the first post-copy page
	// arrives: it cannot get the rest (far more than its read buffer).
	d.onPlace = func(n int) {
		if n == 1 {
			dc.Close()
		}
	}
	src := &allDirty{fakeVM: v}
	stats, r, err := migrate(t, context.Background(), sc, dc, src, v, d, Options{PostCopy: true, MaxDowntime: time.Nanosecond})
	if r.err != nil {
		t.Fatalf("Receive: %v (the handover came before the cut)", r.err)
	}
	if !errors.Is(err, ErrPostCopy) && !errors.Is(err, ErrHandoverUnknown) {
		t.Fatalf("Send: %v, want ErrPostCopy", err)
	}
	if endErr := <-d.ended; endErr == nil || !errors.Is(endErr, ErrPostCopy) {
		t.Fatalf("EndPostCopy(%v), want ErrPostCopy", endErr)
	}
	if !v.paused || v.resumes != 0 || !stats.PostCopy || stats.Resumed {
		t.Fatalf("the source resumed after the destination ran (stats %+v)", stats)
	}
}

// allDirty reports all of RAM dirty after the first dirty bitmap: a guest
// that rewrote everything during the full copy.
type allDirty struct {
	*fakeVM
	calls int
}

func (a *allDirty) DirtyBitmap() ([][]uint64, error) {
	bms, err := a.fakeVM.DirtyBitmap()
	if a.calls++; a.calls > 1 {
		for i, r := range a.regions {
			for p := uint64(0); p < r.Size/PageSize; p++ {
				bms[i][p/64] |= 1 << (p % 64)
			}
		}
	}
	return bms, err
}

func TestPostCopyRefusals(t *testing.T) {
	v := newFakeVM(13, testRegions, 1<<20)
	sc, dc := connPair(t, false)
	go Receive(context.Background(), dc, newFakeDest(testRegions, 1<<20))
	_, err := Send(context.Background(), sc, v, Options{PostCopy: true})
	if err == nil || !strings.Contains(err.Error(), "shared storage") {
		t.Fatalf("post-copy with mirrored disks: %v", err)
	}
	checkSourceRuns(t, v, Stats{})

	// A destination that cannot take post-copy refuses it in the handshake.
	v = newFakeVM(14, testRegions)
	sc, dc = connPair(t, false)
	go Receive(context.Background(), dc, memOnlyDest{newFakeDest(testRegions)})
	if _, err := Send(context.Background(), sc, v, Options{PostCopy: true}); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "post-copy") {
		t.Fatalf("post-copy to a destination without it: %v", err)
	}
}

// pcStream starts a stream whose HELLO names no disks.
func pcStream(features uint64) *stream {
	s := &stream{}
	writePreamble(&s.Buffer, ProtocolVersion)
	return s.frame(MsgHello, 0, hello{Features: features, Regions: smallRegions}.encode())
}

func TestReceivePostCopyHostile(t *testing.T) {
	full := bytes.Repeat([]byte{0xFF}, 8)
	tests := []struct {
		name    string
		data    []byte
		mention string
	}{
		{"discard without the feature", pcStream(0).frame(MsgDiscard, 0, encodeDiscard(0, 0, []uint64{1})).Bytes(), "without the post-copy"},
		{"discard for no region", pcStream(FeaturePostCopy).frame(MsgDiscard, 0, encodeDiscard(1<<20, 0, []uint64{1})).Bytes(), "region at"},
		{"discard past the region", pcStream(FeaturePostCopy).frame(MsgDiscard, 0, encodeDiscard(1<<32, 0, []uint64{1 << 8})).Bytes(), "past the region"},
		{"discard words past the region", pcStream(FeaturePostCopy).frame(MsgDiscard, 0, encodeDiscard(0, 1, []uint64{1})).Bytes(), "past the region"},
		{"short discard", pcStream(FeaturePostCopy).frame(MsgDiscard, 0, full).Bytes(), "DISCARD of 8"},
		{"page request from the source", pcStream(FeaturePostCopy).frame(MsgPageRequest, 0, make([]byte, 8)).Bytes(), "PAGE_REQUEST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newPCDest(newFakeDest(smallRegions), 0)
			c := &streamConn{r: bytes.NewReader(tt.data)}
			_, err := Receive(context.Background(), c, d)
			if err == nil || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.mention)
			}
		})
	}
}

func TestDiscardRoundTrip(t *testing.T) {
	words := []uint64{1, 0, 1 << 63}
	gpa, first, got, err := decodeDiscard(encodeDiscard(1<<32, 5, words))
	if err != nil || gpa != 1<<32 || first != 5 || len(got) != 3 || got[2] != 1<<63 {
		t.Fatalf("decode: %#x %d %v %v", gpa, first, got, err)
	}
	if _, _, _, err := decodeDiscard(binary.LittleEndian.AppendUint32(make([]byte, 12), 1)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ragged DISCARD: %v", err)
	}
}
