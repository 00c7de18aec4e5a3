package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/apitoken"
	"github.com/govisor/govisor/internal/cluster/store"
)

// CallerHeader carries, on a request one agent makes to another for a
// user (a console opened on a host the VM left, a migration's checks),
// whom it is for: "ROLE NAME", the identity the first agent authenticated.
// The other agent then checks the roles of, and audits, that user rather
// than the agents' own token (issue 15). It believes the header only from
// another agent: a request on its Unix socket (root's), or on TCP with an
// admin token and a TLS client certificate the cluster's CA (--peer-ca)
// signed, which users do not hold.
const CallerHeader = "Govisor-Caller"

// callerHeader returns the header to send to another agent for the
// request whose context is ctx: nil when ctx carries no user (the agent's
// own work: reconciling, resuming a migration after a restart).
func callerHeader(ctx context.Context) http.Header {
	v := callerValue(ctx)
	if v == "" {
		return nil
	}
	return http.Header{CallerHeader: {v}}
}

// callerValue is the CallerHeader value naming the user ctx carries, or
// "" when it carries none.
func callerValue(ctx context.Context) string {
	who, ok := apitoken.FromContext(ctx)
	if !ok {
		return ""
	}
	return string(who.Role) + " " + who.Name
}

// migrationCtx returns ctx acting for the user migration m was asked for
// (m.Caller), so that the agents' calls to each other for it carry that
// user rather than only the agents' token; ctx itself when m has none
// (the cluster's own migrations) or the record's value does not parse.
func migrationCtx(ctx context.Context, m store.Migration) context.Context {
	if m.Caller == "" {
		return ctx
	}
	who, err := parseCaller(m.Caller)
	if err != nil {
		return ctx
	}
	return apitoken.WithIdentity(ctx, who)
}

// parseCaller reads a CallerHeader value.
func parseCaller(v string) (apitoken.Identity, error) {
	role, name, ok := strings.Cut(strings.TrimSpace(v), " ")
	r, err := apitoken.ParseRole(role)
	if !ok || err != nil || name == "" || strings.ContainsAny(name, " \t\r\n") {
		return apitoken.Identity{}, fmt.Errorf("%s %q: want ROLE NAME", CallerHeader, v)
	}
	return apitoken.Identity{Name: name, Role: r}, nil
}

// fromPeerAgent reports whether r comes from another agent of the cluster.
func fromPeerAgent(r *http.Request, who apitoken.Identity) bool {
	if who == apitoken.Local {
		return true
	}
	// The listener verifies client certificates against --peer-ca only
	// (tls.VerifyClientCertIfGiven): verified chains mean a peer's.
	return r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && who.Role == apitoken.Admin
}

// forwardedCaller makes a request that another agent forwarded for a user
// that user's: the roles and the audit log (apiguard, inside next) see the
// user. A CallerHeader from anyone but an agent is refused, so that a
// token cannot pass itself off as another.
func forwardedCaller(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Header.Get(CallerHeader)
		if v == "" {
			next.ServeHTTP(w, r)
			return
		}
		who, _ := apitoken.FromContext(r.Context())
		if !fromPeerAgent(r, who) {
			writeCallerError(w, http.StatusForbidden, fmt.Sprintf("%s is taken only from another agent (an admin token with a client certificate --peer-ca signed); token %s is not one", CallerHeader, who.Name))
			return
		}
		id, err := parseCaller(v)
		if err != nil {
			writeCallerError(w, http.StatusBadRequest, err.Error())
			return
		}
		next.ServeHTTP(w, r.WithContext(apitoken.WithIdentity(r.Context(), id)))
	})
}

func writeCallerError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(api.Error{Message: msg})
}
