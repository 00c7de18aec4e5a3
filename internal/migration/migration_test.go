package migration

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

var testRegions = []Region{{GPA: 0, Size: 4 << 20}, {GPA: 1 << 32, Size: 2 << 20}}

// result of one side of a migration.
type recvResult struct {
	state []byte
	err   error
}

// migrate runs Send and Receive concurrently with the guest dirtying memory
// and returns both sides' results.
func migrate(t *testing.T, ctx context.Context, sc, dc net.Conn, src Source, v *fakeVM, d Destination, opts Options) (Stats, recvResult, error) {
	t.Helper()
	stop := make(chan struct{})
	var guest sync.WaitGroup
	// A steadyGuest dirties memory itself, at a rate that does not depend
	// on scheduling; otherwise a goroutine plays the guest.
	if _, steady := src.(*steadyGuest); !steady {
		guest.Add(1)
		go func() { defer guest.Done(); v.runGuest(stop, 5) }()
		for v.guestWrites() < 200 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	rc := make(chan recvResult, 1)
	go func() {
		st, err := Receive(ctx, dc, d)
		rc <- recvResult{st, err}
	}()
	stats, err := Send(ctx, sc, src, opts)
	if err != nil {
		// Unblock a receiver still waiting for the source.
		sc.Close()
	}
	r := <-rc
	close(stop)
	guest.Wait()
	return stats, r, err
}

func TestMigrate(t *testing.T) {
	tests := []struct {
		name     string
		tcp      bool
		compress bool
		disks    []int
		steady   bool // the guest dirties a fixed number of pages per round
		opts     Options
	}{
		{name: "pipe", opts: Options{MaxDowntime: 5 * time.Millisecond, MaxRounds: 6}},
		{name: "tcp", tcp: true, opts: Options{MaxDowntime: 5 * time.Millisecond, MaxRounds: 6}},
		{name: "tcp compressed", tcp: true, compress: true, opts: Options{MaxRounds: 4}},
		{name: "pipe disks", disks: []int{1 << 20, 300000}, opts: Options{MaxRounds: 4}},
		{name: "tcp auto-converge", tcp: true, steady: true, opts: Options{MaxDowntime: time.Nanosecond, MaxRounds: 5, AutoConverge: true}},
		{name: "bandwidth limit", opts: Options{MaxRounds: 2, Bandwidth: 200 << 20}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newFakeVM(uint64(i), testRegions, tt.disks...)
			d := newFakeDest(testRegions, tt.disks...)
			sc, dc := connPair(t, tt.tcp)
			var rounds []Progress
			tt.opts.Compress = tt.compress
			tt.opts.Progress = func(p Progress) { rounds = append(rounds, p) }
			var dst Destination = d
			if len(tt.disks) == 0 {
				dst = memOnlyDest{d}
			}
			var src Source = v
			if tt.steady {
				src = &steadyGuest{fakeVM: v, rng: rand.New(rand.NewPCG(1, 2))}
			}
			stats, r, err := migrate(t, context.Background(), sc, dc, src, v, dst, tt.opts)
			if err != nil || r.err != nil {
				t.Fatalf("Send: %v; Receive: %v", err, r.err)
			}
			if !v.paused || v.pauses != 1 || v.resumes != 0 {
				t.Fatalf("source paused=%v pauses=%d resumes=%d, want left paused once", v.paused, v.pauses, v.resumes)
			}
			sameMemory(t, v, d)
			if string(r.state) != string(v.state) || string(d.committed) != string(v.state) {
				t.Fatalf("device state %q committed %q, want %q", r.state, d.committed, v.state)
			}
			if v.writes == 0 {
				t.Fatal("the guest never ran during migration")
			}
			if len(rounds) == 0 || !rounds[len(rounds)-1].Paused {
				t.Fatalf("progress %+v does not end paused", rounds)
			}
			if stats.Rounds < 1 || stats.PagesSent == 0 || stats.BytesSent == 0 {
				t.Fatalf("stats %+v", stats)
			}
			if len(tt.disks) > 0 && stats.DiskBlocks == 0 {
				t.Fatalf("no disk blocks sent: %+v", stats)
			}
			if tt.opts.AutoConverge && v.throttle == 0 {
				t.Fatalf("auto-converge never throttled: %+v", stats)
			}
			t.Logf("%+v (guest writes %d)", stats, v.writes)
		})
	}
}

// steadyGuest dirties a fixed number of pages between dirty-log reads, a
// guest whose dirty set never shrinks (auto-converge must throttle it).
type steadyGuest struct {
	*fakeVM
	rng *rand.Rand
}

func (g *steadyGuest) DirtyBitmap() ([][]uint64, error) {
	for range 64 {
		g.step(g.rng)
	}
	return g.fakeVM.DirtyBitmap()
}

// checkSourceRuns asserts the source VM is running after a failed migration.
func checkSourceRuns(t *testing.T, v *fakeVM, stats Stats) {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.paused {
		t.Fatalf("source left paused after a failed migration (pauses %d, resumes %d)", v.pauses, v.resumes)
	}
	if v.pauses != v.resumes || stats.Resumed != (v.pauses > 0) {
		t.Fatalf("pauses %d resumes %d, stats.Resumed %v", v.pauses, v.resumes, stats.Resumed)
	}
	if v.throttle != 0 {
		t.Fatalf("source left throttled at %d%%", v.throttle)
	}
}

func TestFailures(t *testing.T) {
	tests := []struct {
		name string
		// setup arranges the failure; it gets the cancel func and the conns.
		setup      func(d *fakeDest, cancel func(), sc, dc net.Conn, opts *Options)
		wantSend   error
		wantRecv   error
		mention    string
		wantPaused bool // the failure happens after Pause
	}{
		{
			name: "cancel during rounds",
			setup: func(d *fakeDest, cancel func(), sc, dc net.Conn, o *Options) {
				o.MaxDowntime, o.MaxRounds, o.AutoConverge = time.Nanosecond, 1000, true
				o.Progress = func(p Progress) {
					if p.Round == 2 {
						cancel()
					}
				}
			},
			wantSend: context.Canceled,
		},
		{
			name: "cancel while paused",
			setup: func(d *fakeDest, cancel func(), sc, dc net.Conn, o *Options) {
				d.onCommit = func() error {
					cancel()
					time.Sleep(50 * time.Millisecond) // let the sender see it first
					return nil
				}
			},
			wantSend: context.Canceled, wantPaused: true,
		},
		{
			name: "connection cut mid-stream",
			setup: func(d *fakeDest, cancel func(), sc, dc net.Conn, o *Options) {
				d.onWrite = func(n int) error {
					if n == 200 {
						dc.Close()
					}
					return nil
				}
			},
		},
		{
			name: "connection cut while paused",
			setup: func(d *fakeDest, cancel func(), sc, dc net.Conn, o *Options) {
				d.onCommit = func() error { dc.Close(); return nil }
			},
			wantPaused: true,
		},
		{
			name: "destination write error",
			setup: func(d *fakeDest, cancel func(), sc, dc net.Conn, o *Options) {
				d.onWrite = func(n int) error {
					if n == 300 {
						return errors.New("no space left on device")
					}
					return nil
				}
			},
			wantSend: ErrAborted, mention: "no space left on device",
		},
		{
			name: "destination cannot load device state",
			setup: func(d *fakeDest, cancel func(), sc, dc net.Conn, o *Options) {
				d.onCommit = func() error { return errors.New("virtio-blk state version 9 unknown") }
			},
			wantSend: ErrAborted, mention: "version 9 unknown", wantPaused: true,
		},
		{
			name: "corrupt byte in the stream",
			setup: func(d *fakeDest, cancel func(), sc, dc net.Conn, o *Options) {
				// replaced below: the source writes through a corrupting conn
			},
			wantSend: ErrAborted, wantRecv: ErrCorrupt, mention: "CRC-32C mismatch",
		},
	}
	for _, tcp := range []bool{false, true} {
		for i, tt := range tests {
			name := tt.name + map[bool]string{false: "/pipe", true: "/tcp"}[tcp]
			t.Run(name, func(t *testing.T) {
				v := newFakeVM(uint64(i), testRegions)
				d := newFakeDest(testRegions)
				sc, dc := connPair(t, tcp)
				if strings.HasPrefix(tt.name, "corrupt") {
					sc = &flipConn{Conn: sc, at: 200000}
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				opts := Options{MaxRounds: 3}
				tt.setup(d, cancel, sc, dc, &opts)
				// A guest that always dirties pages, so rounds never run out.
				src := &steadyGuest{fakeVM: v, rng: rand.New(rand.NewPCG(3, 4))}
				stats, r, err := migrate(t, ctx, sc, dc, src, v, memOnlyDest{d}, opts)
				if err == nil {
					t.Fatal("Send succeeded")
				}
				if r.err == nil {
					t.Fatal("Receive succeeded")
				}
				if tt.wantSend != nil && !errors.Is(err, tt.wantSend) {
					t.Fatalf("Send error %v, want %v", err, tt.wantSend)
				}
				if tt.wantRecv != nil && !errors.Is(r.err, tt.wantRecv) {
					t.Fatalf("Receive error %v, want %v", r.err, tt.wantRecv)
				}
				if !strings.Contains(err.Error(), tt.mention) {
					t.Fatalf("Send error %q does not mention %q", err, tt.mention)
				}
				if tt.wantPaused && v.pauses == 0 {
					t.Fatal("the failure was meant to happen after Pause")
				}
				checkSourceRuns(t, v, stats)
				t.Logf("send: %v\nrecv: %v", err, r.err)
			})
		}
	}
}

// flipConn flips one bit of the byte at offset at of the written stream.
type flipConn struct {
	net.Conn
	mu  sync.Mutex
	off int
	at  int
}

func (c *flipConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.off <= c.at && c.at < c.off+len(p) {
		q := append([]byte(nil), p...)
		q[c.at-c.off] ^= 0x10
		p = q
	}
	c.off += len(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func TestVersionMismatch(t *testing.T) {
	t.Run("destination newer", func(t *testing.T) {
		sc, dc := net.Pipe()
		defer sc.Close()
		defer dc.Close()
		go func() {
			readPreamble(dc)
			writePreamble(dc, ProtocolVersion+1)
		}()
		v := newFakeVM(1, testRegions)
		stats, err := Send(context.Background(), sc, v, Options{})
		if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "destination speaks protocol version 2, this source speaks 1") {
			t.Fatalf("Send: %v", err)
		}
		checkSourceRuns(t, v, stats)
	})
	t.Run("source newer", func(t *testing.T) {
		sc, dc := net.Pipe()
		defer sc.Close()
		defer dc.Close()
		go func() {
			writePreamble(sc, 9)
			readPreamble(sc)
		}()
		_, err := Receive(context.Background(), dc, newFakeDest(testRegions))
		if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "source speaks protocol version 9, this destination speaks 1") {
			t.Fatalf("Receive: %v", err)
		}
	})
	t.Run("not a migration peer", func(t *testing.T) {
		sc, dc := net.Pipe()
		defer sc.Close()
		defer dc.Close()
		go func() {
			b := make([]byte, 12)
			dc.Read(b)
			dc.Write([]byte("HTTP/1.1 400"))
		}()
		v := newFakeVM(1, testRegions)
		stats, err := Send(context.Background(), sc, v, Options{})
		if !errors.Is(err, ErrBadMagic) {
			t.Fatalf("Send: %v", err)
		}
		checkSourceRuns(t, v, stats)
	})
}

func TestLayoutMismatch(t *testing.T) {
	tests := []struct {
		name  string
		dst   Destination
		disks []int
	}{
		{"smaller RAM", memOnlyDest{newFakeDest([]Region{{0, 4 << 20}, {1 << 32, 1 << 20}})}, nil},
		{"other GPA", memOnlyDest{newFakeDest([]Region{{0, 4 << 20}, {2 << 32, 2 << 20}})}, nil},
		{"no disks on destination", memOnlyDest{newFakeDest(testRegions)}, []int{1 << 20}},
		{"disk size", newFakeDest(testRegions, 2<<20), []int{1 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newFakeVM(2, testRegions, tt.disks...)
			sc, dc := connPair(t, false)
			stats, r, err := migrate(t, context.Background(), sc, dc, v, v, tt.dst, Options{})
			if !errors.Is(err, ErrAborted) || !errors.Is(r.err, ErrLayout) || !strings.Contains(err.Error(), "layout mismatch") {
				t.Fatalf("Send: %v; Receive: %v", err, r.err)
			}
			checkSourceRuns(t, v, stats)
		})
	}
}

// dropDone closes the connection instead of writing the destination's DONE.
type dropDone struct{ net.Conn }

func (c dropDone) Write(p []byte) (int, error) {
	if len(p) == frameHeader && MsgType(p[0]) == MsgDone {
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

func TestHandoverUnknownKeepsSourcePaused(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		v := newFakeVM(6, testRegions)
		d := newFakeDest(testRegions)
		sc, dc := connPair(t, tcp)
		_, r, err := migrate(t, context.Background(), sc, dropDone{dc}, v, v, memOnlyDest{d}, Options{MaxRounds: 2, HandoverTimeout: time.Second})
		if r.err != nil {
			t.Fatalf("Receive after GO: %v", r.err)
		}
		if !errors.Is(err, ErrHandoverUnknown) {
			t.Fatalf("Send: %v, want ErrHandoverUnknown", err)
		}
		// The destination runs: the source must stay paused, not resumed.
		if !v.paused || v.resumes != 0 {
			t.Fatalf("source paused=%v resumes=%d", v.paused, v.resumes)
		}
		sameMemory(t, v, d)
	}
}

func TestSourceFailureWhilePaused(t *testing.T) {
	v := newFakeVM(7, testRegions)
	v.stateErr = errors.New("vcpu 1 did not stop")
	d := newFakeDest(testRegions)
	sc, dc := connPair(t, true)
	stats, r, err := migrate(t, context.Background(), sc, dc, v, v, memOnlyDest{d}, Options{MaxRounds: 2})
	if err == nil || !strings.Contains(err.Error(), "vcpu 1 did not stop") {
		t.Fatalf("Send: %v", err)
	}
	// The destination learns why and discards its copy.
	if !errors.Is(r.err, ErrAborted) || !strings.Contains(r.err.Error(), "vcpu 1 did not stop") || d.committed != nil {
		t.Fatalf("Receive: %v (committed %q)", r.err, d.committed)
	}
	if v.pauses != 1 {
		t.Fatalf("pauses %d", v.pauses)
	}
	checkSourceRuns(t, v, stats)
}
