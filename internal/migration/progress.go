package migration

import (
	"context"
	"errors"
	"sync"
	"time"
)

// State is where the latest migration of a VM stands.
type State string

// The states a Tracker reports.
const (
	StateIdle      State = "idle"      // no migration has been started
	StateRunning   State = "running"   // Send is running
	StateCompleted State = "completed" // the destination runs the VM
	StateFailed    State = "failed"    // it failed; the source keeps running
	StateCancelled State = "cancelled" // cancelled; the source keeps running
)

var (
	// ErrBusy is returned by Tracker.Begin while a migration runs.
	ErrBusy = errors.New("migration: a migration of this VM is already running")
	// ErrNotRunning is returned by Tracker.Cancel when nothing runs.
	ErrNotRunning = errors.New("migration: no migration is running")
)

// Status is a Tracker's view of the latest migration.
type Status struct {
	State    State
	Progress Progress  // the latest report of Send
	Stats    Stats     // once the migration has ended
	Err      error     // why it failed or was cancelled
	Started  time.Time // when Begin was called (zero while idle)
	Ended    time.Time // when End was called
}

// Tracker follows the migrations of one VM, one at a time, for an API that
// shows their progress and cancels them while Send runs on another
// goroutine. The zero Tracker is idle and ready.
type Tracker struct {
	mu        sync.Mutex
	st        Status
	cancel    context.CancelFunc
	cancelled bool
}

// Begin records the start of a migration and returns the context Send must
// run under: Cancel cancels it. It fails with ErrBusy while another
// migration runs.
func (t *Tracker) Begin(parent context.Context) (context.Context, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.State == StateRunning {
		return nil, ErrBusy
	}
	ctx, cancel := context.WithCancel(parent)
	t.st = Status{State: StateRunning, Started: time.Now()}
	t.cancel, t.cancelled = cancel, false
	return ctx, nil
}

// Report records a progress report; it is the Options.Progress callback.
func (t *Tracker) Report(p Progress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.State == StateRunning {
		t.st.Progress = p
	}
}

// End records how the migration begun last ended: Send's result.
func (t *Tracker) End(stats Stats, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.State != StateRunning {
		return
	}
	t.st.Stats, t.st.Err, t.st.Ended = stats, err, time.Now()
	t.st.Progress.BytesSent, t.st.Progress.PagesSent, t.st.Progress.Round = stats.BytesSent, stats.PagesSent, stats.Rounds
	switch {
	case err == nil:
		t.st.State = StateCompleted
	case t.cancelled || errors.Is(err, context.Canceled):
		t.st.State = StateCancelled
	default:
		t.st.State = StateFailed
	}
	t.cancel()
	t.cancel = nil
}

// Cancel asks the running migration to stop; the source keeps running
// (Send resumes it if it had paused it). Once the destination has been
// told to run the VM, cancelling has no effect and the migration completes.
func (t *Tracker) Cancel() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.State != StateRunning {
		return ErrNotRunning
	}
	t.cancelled = true
	t.cancel()
	return nil
}

// Status returns the latest migration's state and progress.
func (t *Tracker) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.st
	if st.State == "" {
		st.State = StateIdle
	}
	return st
}
