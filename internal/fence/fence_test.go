package fence

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestFiresWhenNotFed(t *testing.T) {
	got := make(chan string, 2)
	w := New(func(r string) { got <- r })
	if armed, _, _, _ := w.Status(); armed {
		t.Fatal("a new watchdog is armed")
	}
	if err := w.Feed(30 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if !strings.Contains(r, "lease could not be confirmed") {
			t.Errorf("reason %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not fired")
	}
	if _, _, fired, reason := w.Status(); !fired || reason == "" {
		t.Errorf("status after firing: fired %v reason %q", fired, reason)
	}
	if err := w.Feed(time.Second); !errors.Is(err, ErrFired) {
		t.Errorf("Feed after firing: %v", err)
	}
	select {
	case <-got:
		t.Error("fired twice")
	case <-time.After(50 * time.Millisecond):
	}
}

func TestFeedingKeepsItQuiet(t *testing.T) {
	var fired atomic.Bool
	w := New(func(string) { fired.Store(true) })
	for i := 0; i < 20; i++ {
		if err := w.Feed(2 * time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	armed, rem, f, _ := w.Status()
	if !armed || rem <= 0 || rem > 2*time.Second || f {
		t.Errorf("status: armed %v remaining %v fired %v", armed, rem, f)
	}
	if err := w.Feed(0); err != nil { // disarm
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if fired.Load() {
		t.Error("fired after being disarmed")
	}
	w.Feed(20 * time.Millisecond)
	w.Stop()
	time.Sleep(100 * time.Millisecond)
	if fired.Load() {
		t.Error("fired after Stop")
	}
}

func TestFeedRejectsBadTTL(t *testing.T) {
	w := New(func(string) {})
	for _, ttl := range []time.Duration{-time.Second, MaxTTL + 1} {
		if err := w.Feed(ttl); err == nil {
			t.Errorf("ttl %v accepted", ttl)
		}
	}
}

// TestFeedUntil: a deadline in CLOCK_MONOTONIC time arms the watchdog to
// that moment; one already passed fires it at once rather than disarming.
func TestFeedUntil(t *testing.T) {
	fired := make(chan string, 1)
	w := New(func(r string) { fired <- r })
	defer w.Stop()
	if err := w.FeedUntil(MonoDeadline(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if armed, rem, _, _ := w.Status(); !armed || rem < 59*time.Second {
		t.Errorf("armed %v with %v left, want about a minute", armed, rem)
	}
	if err := w.FeedUntil(MonoDeadline(time.Minute + MaxTTL)); err == nil {
		t.Error("a deadline past MaxTTL was taken")
	}
	if err := w.FeedUntil(0); err == nil {
		t.Error("deadline 0 was taken")
	}
	if err := w.FeedUntil(MonoNow() - int64(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("a passed deadline did not fire the watchdog")
	}
}
