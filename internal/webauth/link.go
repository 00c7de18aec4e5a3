package webauth

import (
	"crypto/subtle"
	"net/http"
	"sync"
	"time"

	"github.com/govisor/govisor/internal/apitoken"
)

// LinkPath opens a session from a one-time login link: GET
// LinkPath?token=T, where T came from Links.Add (`govisor ui`).
const LinkPath = "/ui/api/link"

// linkTTL is how long a login link stays usable.
const linkTTL = 5 * time.Minute

// Links are one-time login tokens: the first GET of LinkPath with one
// opens a session and spends it, as the one-time links of Jupyter's or
// Grafana's command-line logins do.
type Links struct {
	mu sync.Mutex
	m  map[string]time.Time // token -> expiry
}

// Add makes a new one-time token.
func (l *Links) Add() string {
	t := randomID()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]time.Time{}
	}
	l.m[t] = time.Now().Add(linkTTL)
	return t
}

// spend reports whether got is a live link token, and spends it.
func (l *Links) spend(got string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	hit := ""
	for t, exp := range l.m {
		if !time.Now().Before(exp) {
			delete(l.m, t)
			continue
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(t)) == 1 {
			hit = t
		}
	}
	if hit == "" || got == "" {
		return false
	}
	delete(l.m, hit)
	return true
}

func (a *Auth) link(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "open a login link with GET", "")
		return
	}
	if a.Links == nil || !a.Links.spend(r.URL.Query().Get("token")) {
		writeError(w, http.StatusUnauthorized, "this login link is wrong, expired or used already: run govisor ui again", "")
		return
	}
	a.setSession(w, r, apitoken.Local)
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}
