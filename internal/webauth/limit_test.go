package webauth

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestLoginRateLimit: an address may fail LoginBurst logins, then one per
// LoginRefill; while it waits even the right token is refused (429 with
// Retry-After), other addresses are not affected, and a right token alone
// uses nothing up.
func TestLoginRateLimit(t *testing.T) {
	f := newFixture(t)
	f.auth.limiter().now = func() time.Time { return f.now }
	login := func(addr, token string) (int, string) {
		r := jsonPost(LoginPath, `{"token":"`+token+`"}`)
		r.RemoteAddr = addr
		rec := f.do(r)
		return rec.Code, rec.Header().Get("Retry-After")
	}
	const a, b = "192.0.2.7:4000", "192.0.2.8:4000"
	for i := range 10 {
		if code, _ := login(a, goodToken); code != http.StatusOK {
			t.Fatalf("right token #%d: %d", i, code)
		}
	}
	for i := range LoginBurst {
		if code, _ := login(a, "guess"); code != http.StatusUnauthorized {
			t.Fatalf("wrong token #%d: %d, want 401", i, code)
		}
	}
	// Another port of the same address is the same client.
	if code, retry := login("192.0.2.7:5000", goodToken); code != http.StatusTooManyRequests || retry != "10" {
		t.Fatalf("after %d failures, the right token: %d (Retry-After %q), want 429 after 10 s", LoginBurst, code, retry)
	}
	if code, _ := login(b, goodToken); code != http.StatusOK {
		t.Fatalf("another address: %d", code)
	}
	f.now = f.now.Add(LoginRefill / 2)
	if code, retry := login(a, "guess"); code != http.StatusTooManyRequests || retry != "5" {
		t.Fatalf("half a refill later: %d (Retry-After %q)", code, retry)
	}
	f.now = f.now.Add(LoginRefill / 2)
	if code, _ := login(a, "guess"); code != http.StatusUnauthorized {
		t.Fatalf("a refill later, one more try: %d", code)
	}
	if code, _ := login(a, goodToken); code != http.StatusTooManyRequests {
		t.Fatalf("that try used up: %d", code)
	}
	f.now = f.now.Add(LoginRefill)
	if code, _ := login(a, goodToken); code != http.StatusOK {
		t.Fatalf("the right token once allowed: %d", code)
	}
}

// TestLimiterBounded: the limiter forgets addresses rather than grow
// without bound, those whose allowance is whole again first.
func TestLimiterBounded(t *testing.T) {
	now := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	l := NewLimiter(2, time.Second)
	l.now = func() time.Time { return now }
	for i := range maxClients {
		l.fail(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	l.fail("stalest-but-one")
	if len(l.m) != maxClients {
		t.Fatalf("%d addresses kept, want %d", len(l.m), maxClients)
	}
	now = now.Add(time.Hour) // every allowance is whole again
	l.fail("late")
	l.fail("late")
	if len(l.m) != 1 || l.wait("late") != time.Second {
		t.Fatalf("after the prune: %d addresses, late waits %v", len(l.m), l.wait("late"))
	}
}
