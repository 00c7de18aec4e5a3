package webauth

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/apitoken"
)

// CookieName is the session cookie.
const CookieName = "govisor_session"

// CSRFHeader carries the session's CSRF token on requests that change
// something (OWASP CSRF cheat sheet, "synchronizer token pattern": the
// token lives in the server's session and is handed to the page's script,
// which a page of another origin cannot read).
const CSRFHeader = "X-CSRF-Token"

// The endpoints this package serves itself.
const (
	LoginPath   = "/ui/api/login"   // POST {"token": "..."}: open a session
	LogoutPath  = "/ui/api/logout"  // POST: end the session
	SessionPath = "/ui/api/session" // GET: the session's CSRF token and expiry
)

// cookieGrace is how long the session cookie outlives its session.
const cookieGrace = 10 * time.Minute

// Login is the body of a login request.
type Login struct {
	Token string `json:"token"`
}

// SessionInfo answers a login and GET SessionPath.
type SessionInfo struct {
	// CSRFToken goes in the X-CSRF-Token header of mutating requests.
	CSRFToken string    `json:"csrfToken"`
	Expires   time.Time `json:"expires,omitzero"`
	// Open is true where no login is needed (the agent's Unix socket).
	Open bool `json:"open,omitempty"`
	// User is the token's name and role: the page offers what the role
	// may do.
	User *apitoken.Identity `json:"user,omitempty"`
}

// Auth authorizes requests on a listener that requires a token.
type Auth struct {
	Tokens []string // admin tokens (as token files were before roles)
	// Lookup finds the identity of a token besides Tokens (nil: none),
	// such as apitoken.File.Lookup.
	Lookup   func(secret string) (apitoken.Identity, bool)
	Sessions *Sessions
	Links    *Links // one-time login links (nil: none)
	// Limit counts failed logins by client address (nil: a default of
	// LoginBurst and LoginRefill, made at the first login).
	Limit *Limiter

	limitOnce sync.Once
}

// limiter returns a.Limit, made on first use when not set.
func (a *Auth) limiter() *Limiter {
	a.limitOnce.Do(func() {
		if a.Limit == nil {
			a.Limit = NewLimiter(LoginBurst, LoginRefill)
		}
	})
	return a.Limit
}

// Handler lets through requests with a valid bearer token (the API's
// clients), with a live session cookie (browsers; mutating methods also
// need the CSRF header), and the console's static files under /ui/, which
// hold no data; it serves the login, logout and session endpoints itself.
func (a *Auth) Handler(next http.Handler) http.Handler {
	bearer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		who, valid := a.identify(got)
		if !ok || !valid {
			// What the API said before sessions existed (httpapi.RequireToken).
			w.Header().Set("WWW-Authenticate", `Bearer realm="govisor"`)
			writeError(w, http.StatusUnauthorized, "a valid bearer token is required", "")
			return
		}
		next.ServeHTTP(w, r.WithContext(apitoken.WithIdentity(r.Context(), who)))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case LoginPath:
			a.login(w, r)
			return
		case LogoutPath:
			a.logout(w, r)
			return
		case SessionPath:
			a.session(w, r)
			return
		case LinkPath:
			a.link(w, r)
			return
		}
		if isStatic(r) {
			next.ServeHTTP(w, r)
			return
		}
		c, err := r.Cookie(CookieName)
		if r.Header.Get("Authorization") != "" || err != nil {
			// An API client, as before sessions: its token decides, never
			// a cookie beside it.
			bearer.ServeHTTP(w, r)
			return
		}
		se, err := a.Sessions.lookup(c.Value)
		if err != nil {
			refuseSession(w, err)
			return
		}
		if !safeMethod(r.Method) && !validCSRF(r, se) {
			writeError(w, http.StatusForbidden, "missing or wrong "+CSRFHeader+" header: a "+r.Method+" with the session cookie needs the session's CSRF token", "")
			return
		}
		next.ServeHTTP(w, r.WithContext(apitoken.WithIdentity(r.Context(), se.who)))
	})
}

// isStatic reports a GET or HEAD of the console's files (everything under
// /ui/ but its API): public, like any login page's scripts.
func isStatic(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := r.URL.Path
	if p != "/ui/" && path.Clean(p) != p {
		return false // such as /ui/../v1/vms: not a file of the console
	}
	return p == "/ui" || (strings.HasPrefix(p, "/ui/") && !strings.HasPrefix(p, "/ui/api/"))
}

// safeMethod reports methods that change nothing (RFC 9110 section 9.2.1).
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func validCSRF(r *http.Request, se session) bool {
	got := r.Header.Get(CSRFHeader)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(se.csrf)) == 1
}

// identify finds who got, a token, stands for: Lookup's answer, else an
// admin of Tokens (compared in constant time by apitoken.Lookup).
func (a *Auth) identify(got string) (apitoken.Identity, bool) {
	if a.Lookup != nil {
		if id, ok := a.Lookup(got); ok {
			return id, true
		}
	}
	toks := make([]apitoken.Token, len(a.Tokens))
	for i, t := range a.Tokens {
		toks[i] = apitoken.Token{Secret: t, Identity: apitoken.Identity{Name: apitoken.DefaultName(t), Role: apitoken.Admin}}
	}
	return apitoken.Lookup(toks, got)
}

func (a *Auth) login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "log in with POST", "")
		return
	}
	// Only a script can send JSON to another origin, and only after a CORS
	// preflight this agent never grants: no login from another site's form.
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "log in with a JSON body (Content-Type: application/json)", "")
		return
	}
	// An address that failed too often is refused before its token is
	// looked at: a right guess then is no different from a wrong one.
	client := clientOf(r)
	if wait := a.limiter().wait(client); wait > 0 {
		refuseTooMany(w, wait)
		return
	}
	var l Login
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		writeError(w, http.StatusBadRequest, `body is not {"token": "..."} in JSON`, "token")
		return
	}
	who, ok := a.identify(l.Token)
	if !ok {
		a.limiter().fail(client)
		writeError(w, http.StatusUnauthorized, "wrong token: give one of the agent's API tokens (--token-file)", "token")
		return
	}
	writeJSON(w, http.StatusOK, a.setSession(w, r, who))
}

// setSession opens a session of who and sets its cookie.
func (a *Auth) setSession(w http.ResponseWriter, r *http.Request, who apitoken.Identity) SessionInfo {
	id, csrf, exp := a.Sessions.open(who)
	// The cookie outlives the session a little: a browser then still sends
	// it after the expiry, and the agent can answer "session expired"
	// instead of "no token".
	keep := exp.Sub(a.Sessions.now()) + cookieGrace
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: id, Path: "/", Expires: exp.Add(cookieGrace), MaxAge: int(keep.Seconds()),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	return SessionInfo{CSRFToken: csrf, Expires: exp, User: &who}
}

func (a *Auth) logout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "log out with POST", "")
		return
	}
	c, err := r.Cookie(CookieName)
	if err != nil {
		writeError(w, http.StatusUnauthorized, errNoSession.Error(), "")
		return
	}
	se, err := a.Sessions.lookup(c.Value)
	if err == nil && !validCSRF(r, se) {
		// A page of another site must not log the user out either.
		writeError(w, http.StatusForbidden, "missing or wrong "+CSRFHeader+" header", "")
		return
	}
	a.Sessions.close(c.Value)
	clearCookie(w, r)
	w.WriteHeader(http.StatusNoContent)
}

func (a *Auth) session(w http.ResponseWriter, r *http.Request) {
	if !safeMethod(r.Method) {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "read the session with GET", "")
		return
	}
	c, err := r.Cookie(CookieName)
	if err != nil {
		writeError(w, http.StatusUnauthorized, errNoSession.Error(), "")
		return
	}
	se, err := a.Sessions.lookup(c.Value)
	if err != nil {
		refuseSession(w, err)
		return
	}
	writeJSON(w, http.StatusOK, SessionInfo{CSRFToken: se.csrf, Expires: se.expires, User: &se.who})
}

// Open serves the session endpoints where the listener needs no login (the
// agent's Unix socket, reachable only by its own user): the session is
// always there, and no CSRF token is asked for. Its requests are
// apitoken.Local's.
func Open(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case LoginPath, SessionPath:
			writeJSON(w, http.StatusOK, SessionInfo{Open: true, User: &apitoken.Local})
		case LogoutPath:
			w.WriteHeader(http.StatusNoContent)
		default:
			next.ServeHTTP(w, r.WithContext(apitoken.WithIdentity(r.Context(), apitoken.Local)))
		}
	})
}

// refuseSession answers a request whose session is unknown or expired.
// The cookie stays: every request the page has in flight (and its event
// stream's reconnects) then says why, not just the first.
func refuseSession(w http.ResponseWriter, err error) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="govisor"`)
	writeError(w, http.StatusUnauthorized, err.Error(), "")
}

func clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

func writeError(w http.ResponseWriter, code int, msg, field string) {
	writeJSON(w, code, api.Error{Message: msg, Field: field})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
