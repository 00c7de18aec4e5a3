package webauth

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Login rate limit: each client address may fail LoginBurst logins in a
// row, then one more each LoginRefill (a token bucket; OWASP Authentication
// cheat sheet, "Protect against automated attacks"). A guesser gets about
// 8,640 tries a day from one address instead of thousands a second.
const (
	LoginBurst  = 5
	LoginRefill = 10 * time.Second
)

// maxClients bounds the addresses tracked; past it, those whose buckets
// are full again are forgotten, then the stalest.
const maxClients = 10000

// Limiter counts failed logins by client address.
type Limiter struct {
	burst  float64
	refill time.Duration
	now    func() time.Time

	mu sync.Mutex
	m  map[string]bucket
}

// bucket is one address's allowance: tokens left at time at.
type bucket struct {
	tokens float64
	at     time.Time
}

// NewLimiter returns a limiter of burst failures refilled one per refill.
func NewLimiter(burst int, refill time.Duration) *Limiter {
	return &Limiter{burst: float64(burst), refill: refill, now: time.Now, m: map[string]bucket{}}
}

// clientOf is the address a request came from: the connection's peer, not
// a header a client could set.
func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// levelLocked is b refilled up to now; l.mu is held.
func (l *Limiter) levelLocked(b bucket, now time.Time) float64 {
	return math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()/l.refill.Seconds())
}

// wait returns how long client must wait before its next login try (0:
// it may try now).
func (l *Limiter) wait(client string) time.Duration {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[client]
	if !ok {
		return 0
	}
	lvl := l.levelLocked(b, now)
	if lvl >= 1 {
		return 0
	}
	return time.Duration((1 - lvl) * float64(l.refill))
}

// fail takes one try from client's allowance.
func (l *Limiter) fail(client string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[client]
	lvl := l.burst
	if ok {
		lvl = l.levelLocked(b, now)
	} else if len(l.m) >= maxClients {
		l.pruneLocked(now)
	}
	l.m[client] = bucket{tokens: math.Max(0, lvl-1), at: now}
}

// pruneLocked forgets the addresses whose allowance is whole again, and if
// that is not enough, the one seen longest ago; l.mu is held.
func (l *Limiter) pruneLocked(now time.Time) {
	var stalest string
	var first time.Time
	for k, b := range l.m {
		if l.levelLocked(b, now) >= l.burst {
			delete(l.m, k)
		} else if stalest == "" || b.at.Before(first) {
			stalest, first = k, b.at
		}
	}
	if len(l.m) >= maxClients {
		delete(l.m, stalest)
	}
}

// refuseTooMany answers a login from an address that failed too often.
func refuseTooMany(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	writeError(w, http.StatusTooManyRequests, "too many failed logins from this address: try again in "+wait.Round(time.Second).String(), "token")
}
