package apiguard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/apitoken"
	"github.com/govisor/govisor/internal/audit"
)

// Guard holds what the checks need; a nil field turns its check off.
type Guard struct {
	// Audit records every change (nil: none).
	Audit *audit.Log
	// Limit bounds each token's rate; the Unix socket (apitoken.Local),
	// which no token reaches, is not limited.
	Limit *Limiter
	// MaxBody bounds a request body (0: no bound).
	MaxBody int64
	// Logf reports what the guard cannot answer to the client, such as a
	// failed audit write (nil: dropped).
	Logf func(format string, args ...any)
	// now is the clock (tests).
	now func() time.Time
}

func (g *Guard) clock() time.Time {
	if g.now != nil {
		return g.now()
	}
	return time.Now()
}

// Wrap guards h, the handler of pattern: who may call it (Need), how
// often, with how large a body, and the audit record of a change.
func (g *Guard) Wrap(pattern string, h http.Handler) http.Handler {
	need := Need(pattern)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := g.clock()
		who, ok := apitoken.FromContext(r.Context())
		if !ok {
			// Every listener of the agent authenticates: this is a bug,
			// never a reason to let a request through.
			writeError(w, http.StatusForbidden, "request carries no identity: its listener did not authenticate it")
			return
		}
		if g.Limit != nil && who != apitoken.Local {
			if ok, wait := g.Limit.allow(who.Name, start); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(retryAfter(wait)))
				writeError(w, http.StatusTooManyRequests, fmt.Sprintf("token %s sends requests too fast: retry in %s", who.Name, wait.Round(time.Millisecond)))
				return
			}
		}
		rec := &statusRecorder{ResponseWriter: w}
		if changes(r.Method) && g.Audit != nil {
			w = rec
			defer func() {
				err := g.Audit.Append(api.AuditRecord{
					Time: start.UTC(), Who: who.Name, Role: string(who.Role), Method: r.Method, Path: r.URL.Path,
					Target: target(pattern, r), Status: rec.status(), Remote: remote(r),
				})
				if err != nil && g.Logf != nil {
					g.Logf("%v", err)
				}
			}()
		}
		if !who.Role.Allows(need) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("token %s has the %s role: %s %s needs %s", who.Name, who.Role, r.Method, r.URL.Path, need))
			return
		}
		if g.MaxBody > 0 {
			if r.ContentLength > g.MaxBody {
				writeError(w, http.StatusRequestEntityTooLarge, tooLarge(g.MaxBody))
				return
			}
			// A body without a length (chunked) is cut where it passes the
			// bound; httpapi answers that read error with 413 too.
			r.Body = http.MaxBytesReader(w, r.Body, g.MaxBody)
		}
		h.ServeHTTP(w, r)
	})
}

// tooLarge is the message of a 413.
func tooLarge(limit int64) string {
	return fmt.Sprintf("request body larger than the agent's limit of %d bytes", limit)
}

// remote is the client's address on TCP; empty on the Unix socket.
func remote(r *http.Request) string {
	if r.RemoteAddr == "@" {
		return ""
	}
	return r.RemoteAddr
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(api.Error{Message: msg})
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (Flush,
// Hijack, deadlines).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// status is the answer's status: 200 if the handler wrote nothing.
func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}
