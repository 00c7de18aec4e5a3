package apiguard

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter bounds each token's request rate with a token bucket per token
// name (golang.org/x/time/rate). Its map holds one bucket per token that
// made a request: bounded by the token file.
type Limiter struct {
	every rate.Limit
	burst int

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

// NewLimiter allows each token perSecond requests a second on average and
// burst at once.
func NewLimiter(perSecond float64, burst int) *Limiter {
	return &Limiter{every: rate.Limit(perSecond), burst: max(burst, 1), m: map[string]*rate.Limiter{}}
}

// allow takes one request of who from its bucket, or says how long until
// the bucket holds one.
func (l *Limiter) allow(who string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	b, ok := l.m[who]
	if !ok {
		b = rate.NewLimiter(l.every, l.burst)
		l.m[who] = b
	}
	l.mu.Unlock()
	res := b.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// retryAfter is a Retry-After value (RFC 9110 section 10.2.3: whole
// seconds) for a wait of d, at least 1.
func retryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
