// Package webauth lets a browser use the agent's TCP API (issue 14): a
// login with an API token opens a session held in a cookie, requests that
// carry the cookie are authorized as that token's would be, and requests
// that change something must also echo the session's CSRF token in a
// header. Bearer-token API clients are not affected.
package webauth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"github.com/govisor/govisor/internal/apitoken"
)

// DefaultTTL is how long a session lasts after its login.
const DefaultTTL = 12 * time.Hour

// maxSessions bounds the sessions kept at once. Only a valid token opens
// one, so this guards against a leaking client, not an attacker.
const maxSessions = 10000

// Errors of Sessions.lookup.
var (
	errNoSession = errors.New("not logged in: log in with an API token")
	errExpired   = errors.New("session expired: log in again")
)

// Sessions are the open browser sessions of one agent, in memory: an agent
// restart logs every browser out, as a token file change would warrant.
type Sessions struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	// m is keyed by the SHA-256 of the session id: the map never holds a
	// value that would authorize a request on its own.
	m map[[32]byte]session
}

// session is one login.
type session struct {
	csrf    string
	expires time.Time
	who     apitoken.Identity // the token that logged in (issue 15: roles hold in sessions too)
}

// NewSessions returns an empty session store whose sessions last ttl
// (DefaultTTL if 0).
func NewSessions(ttl time.Duration) *Sessions {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Sessions{ttl: ttl, now: time.Now, m: map[[32]byte]session{}}
}

// randomID returns 32 random bytes in URL-safe base64 (no padding).
func randomID() string {
	var b [32]byte
	rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// open starts a session of who and returns its id, CSRF token and expiry.
func (s *Sessions) open(who apitoken.Identity) (id, csrf string, expires time.Time) {
	id, csrf = randomID(), randomID()
	now := s.now()
	expires = now.Add(s.ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		s.pruneLocked(now)
	}
	if len(s.m) >= maxSessions {
		// Still full of live sessions: drop the one that ends first.
		var oldest [32]byte
		first := true
		for k, v := range s.m {
			if first || v.expires.Before(s.m[oldest].expires) {
				oldest, first = k, false
			}
		}
		delete(s.m, oldest)
	}
	s.m[sha256.Sum256([]byte(id))] = session{csrf: csrf, expires: expires, who: who}
	return id, csrf, expires
}

// lookup returns the live session of id: errNoSession if there is none,
// errExpired if its time is up (it stays known as expired until open
// needs the room, so each later request also says why it is refused).
func (s *Sessions) lookup(id string) (session, error) {
	if id == "" {
		return session{}, errNoSession
	}
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.m[k]
	if !ok {
		return session{}, errNoSession
	}
	if !s.now().Before(se.expires) {
		return session{}, errExpired
	}
	return se, nil
}

// close ends the session of id, if any.
func (s *Sessions) close(id string) {
	s.mu.Lock()
	delete(s.m, sha256.Sum256([]byte(id)))
	s.mu.Unlock()
}

// pruneLocked drops expired sessions; s.mu is held.
func (s *Sessions) pruneLocked(now time.Time) {
	for k, v := range s.m {
		if !now.Before(v.expires) {
			delete(s.m, k)
		}
	}
}
