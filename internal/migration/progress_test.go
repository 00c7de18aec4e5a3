package migration

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// TestTrackerStates walks a Tracker through each way a migration ends.
func TestTrackerStates(t *testing.T) {
	boom := errors.New("link down")
	tests := []struct {
		name   string
		cancel bool
		err    error
		want   State
	}{
		{"completed", false, nil, StateCompleted},
		{"failed", false, boom, StateFailed},
		{"cancelled", true, context.Canceled, StateCancelled},
		{"cancelled, reported as another error", true, boom, StateCancelled},
		{"cancel too late: the destination runs", true, nil, StateCompleted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr Tracker
			if st := tr.Status(); st.State != StateIdle {
				t.Fatalf("new tracker: %v", st.State)
			}
			if err := tr.Cancel(); !errors.Is(err, ErrNotRunning) {
				t.Fatalf("Cancel while idle: %v", err)
			}
			ctx, err := tr.Begin(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tr.Begin(context.Background()); !errors.Is(err, ErrBusy) {
				t.Fatalf("second Begin: %v", err)
			}
			tr.Report(Progress{Round: 2, BytesSent: 1000, DirtyPages: 7})
			if st := tr.Status(); st.State != StateRunning || st.Progress.Round != 2 || st.Progress.DirtyPages != 7 {
				t.Fatalf("running status %+v", st)
			}
			if tt.cancel {
				if err := tr.Cancel(); err != nil {
					t.Fatal(err)
				}
				if ctx.Err() == nil {
					t.Fatal("Cancel did not cancel the context")
				}
			}
			tr.End(Stats{Rounds: 3, BytesSent: 5000}, tt.err)
			tr.Report(Progress{Round: 9}) // late: ignored
			st := tr.Status()
			if st.State != tt.want || st.Progress.Round != 3 || st.Progress.BytesSent != 5000 || !errors.Is(st.Err, tt.err) {
				t.Fatalf("final status %+v, want state %v", st, tt.want)
			}
			if ctx.Err() == nil {
				t.Fatal("context still live after End")
			}
			if _, err := tr.Begin(context.Background()); err != nil {
				t.Fatalf("Begin after the end of a migration: %v", err)
			}
		})
	}
}

// TestTrackerWithSend cancels a real Send through a Tracker once progress
// reports show the full copy under way: the reports come during the copy
// (not only at round ends), and the source keeps running.
func TestTrackerWithSend(t *testing.T) {
	var tr Tracker
	v := newFakeVM(7, testRegions)
	d := newFakeDest(testRegions)
	sc, dc := connPair(t, true)
	ctx, err := tr.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []Progress
	opts := Options{Bandwidth: 4 << 20, Progress: func(p Progress) {
		tr.Report(p)
		mu.Lock()
		seen = append(seen, p)
		n := len(seen)
		mu.Unlock()
		if n == 3 {
			if st := tr.Status(); st.State != StateRunning || st.Progress.BytesSent != p.BytesSent {
				t.Errorf("status while running: %+v", st)
			}
			tr.Cancel()
		}
	}}
	stats, _, err := migrate(t, ctx, sc, dc, v, v, memOnlyDest{d}, opts)
	tr.End(stats, err)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Send after Cancel: %v", err)
	}
	checkSourceRuns(t, v, stats)
	st := tr.Status()
	if st.State != StateCancelled || st.Err == nil {
		t.Fatalf("status %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 3 || seen[0].Round != 0 || seen[2].Round != 0 || seen[2].BytesSent <= seen[0].BytesSent {
		t.Fatalf("progress during the full copy: %+v", seen)
	}
	var total uint64
	for _, r := range testRegions {
		total += r.Size / PageSize
	}
	left := false
	for _, p := range seen {
		if p.RemainingPages > total {
			t.Fatalf("remaining %d pages of %d: %+v", p.RemainingPages, total, p)
		}
		left = left || p.RemainingPages > 0
	}
	if !left {
		t.Fatalf("no report during the full copy counts pages left: %+v", seen)
	}
}
