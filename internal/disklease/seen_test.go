package disklease

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestObserverShortensTheWait: a dead holder's lease, watched by an
// observer for most of the expiry time, is taken after the rest of it;
// a live holder's is never, whatever the observer says; an observation of
// an older record (the holder renewed since) does not count.
func TestObserverShortensTheWait(t *testing.T) {
	d := disk(t)
	var o Observer
	if _, ok := o.Seen(d); ok {
		t.Fatal("seen before any read")
	}
	mustAcquire(t, d, a).crash()
	if err := o.Observe(d); err != nil {
		t.Fatal(err)
	}
	time.Sleep(fast.Expire * 3 / 4)
	o.Observe(d)
	seen, ok := o.Seen(d)
	if !ok || seen.For < fast.Expire/2 {
		t.Fatalf("seen %+v %v after watching for 3/4 of Expire", seen, ok)
	}
	t0 := time.Now()
	lb, err := AcquireSeen(context.Background(), d, b, fast, seen)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(t0); el >= fast.Expire {
		t.Errorf("took %v with %v already seen: the observation did not count", el, seen.For)
	}

	// lb lives and renews: an old observation of its record means nothing,
	// and the acquirer finds it held.
	o.Observe(d)
	time.Sleep(fast.Expire)
	old, _ := o.Seen(d)
	_, err = AcquireSeen(context.Background(), d, a, fast, Seen{Sum: old.Sum, For: time.Hour})
	var held *HeldError
	if !errors.As(err, &held) {
		t.Errorf("a live holder's lease with a stale observation: %v, want HeldError", err)
	}
	lb.Release(context.Background())
	o.Observe(d)
	if _, ok := o.Seen(d); ok {
		t.Error("a released lease is seen as held")
	}
	o.Keep(func(string) bool { return false })
	if len(o.seen) != 0 {
		t.Error("Keep kept a refused disk")
	}
}
