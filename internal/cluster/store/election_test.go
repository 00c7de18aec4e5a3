package store

import (
	"context"
	"testing"
	"time"
)

// TestElection: one leader at a time; a resigned leader's successor takes
// over at once, a vanished one's (its client gone) within the session TTL.
func TestElection(t *testing.T) {
	ctx := context.Background()
	s1 := openTemp(t, t.TempDir())
	defer s1.Close()
	client := func() *Store {
		s, err := Open(ctx, Config{Endpoints: s1.Endpoints()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s2, s3 := client(), client()
	defer s2.Close()
	if l, err := s1.Leader(ctx); err != nil || l != "" {
		t.Fatalf("leader before any campaign: %q %v", l, err)
	}
	if _, err := s1.Campaign(ctx, "h1", time.Second); err == nil {
		t.Error("a 1s session TTL was accepted")
	}
	l1, err := s1.Campaign(ctx, "h1", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	won := make(chan string, 2)
	var l2, l3 *Leadership
	go func() {
		var err error
		if l2, err = s2.Campaign(ctx, "h2", 2*time.Second); err == nil {
			won <- "h2"
		}
	}()
	time.Sleep(300 * time.Millisecond) // h2 queues before h3
	go func() {
		var err error
		if l3, err = s3.Campaign(ctx, "h3", 2*time.Second); err == nil {
			won <- "h3"
		}
	}()
	select {
	case w := <-won:
		t.Fatalf("%s won while h1 leads", w)
	case <-time.After(time.Second):
	}
	if l, _ := s3.Leader(ctx); l != "h1" {
		t.Errorf("leader %q, want h1", l)
	}
	// A campaign gives up with its context.
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if _, err := s1.Campaign(cctx, "h4", 2*time.Second); err == nil {
		t.Error("a campaign won while h1 leads")
	}
	cancel()

	t0 := time.Now()
	if err := l1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-won:
		if w != "h2" {
			t.Fatalf("%s won after h1 resigned; h2 queued first", w)
		}
		t.Logf("h2 led %v after h1 resigned", time.Since(t0).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("nobody took over after h1 resigned")
	}
	if l, _ := s1.Leader(ctx); l != "h2" {
		t.Errorf("leader %q, want h2", l)
	}

	// h2's agent vanishes (its client closes without resigning: its
	// session's lease is left to expire).
	t0 = time.Now()
	s2.Close()
	select {
	case <-l2.Done():
	case <-time.After(5 * time.Second):
		t.Error("h2's leadership not done after its client closed")
	}
	select {
	case w := <-won:
		if w != "h3" {
			t.Fatalf("%s won", w)
		}
		t.Logf("h3 led %v after h2's client went away", time.Since(t0).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("h3 did not take over within 10s of h2's client going away (TTL 2s)")
	}
	l3.Resign(ctx)
	s3.Close()
}
