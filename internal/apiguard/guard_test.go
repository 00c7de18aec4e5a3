package apiguard_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/httpapi"
	"github.com/govisor/govisor/internal/apiguard"
	"github.com/govisor/govisor/internal/apitoken"
	"github.com/govisor/govisor/internal/audit"
)

// TestEveryRouteHasItsRole pins the role each of the agent's routes needs
// (issue 15): a new route must be placed here on purpose.
func TestEveryRouteHasItsRole(t *testing.T) {
	want := map[string]apitoken.Role{
		"POST /v1/vms":                             apitoken.Operator,
		"GET /v1/vms":                              apitoken.Viewer,
		"GET /v1/vms/{name}":                       apitoken.Viewer,
		"PUT /v1/vms/{name}":                       apitoken.Operator,
		"DELETE /v1/vms/{name}":                    apitoken.Operator,
		"POST /v1/vms/{name}/{action}":             apitoken.Operator,
		"GET /v1/vms/{name}/console":               apitoken.Operator,
		"POST /v1/vms/{name}/snapshot":             apitoken.Operator,
		"POST /v1/vms/{name}/disks":                apitoken.Operator,
		"DELETE /v1/vms/{name}/disks/{index}":      apitoken.Operator,
		"GET /v1/vms/{name}/snapshots":             apitoken.Viewer,
		"POST /v1/vms/{name}/restore":              apitoken.Operator,
		"POST /v1/vms/{name}/migrate":              apitoken.Operator,
		"DELETE /v1/vms/{name}/migrate":            apitoken.Operator,
		"POST /v1/vms/{name}/incoming":             apitoken.Operator,
		"DELETE /v1/vms/{name}/incoming":           apitoken.Operator,
		"GET /v1/vms/{name}/incoming":              apitoken.Viewer,
		"GET /v1/events":                           apitoken.Viewer,
		"GET /v1/host":                             apitoken.Viewer,
		"GET /v1/hosts":                            apitoken.Viewer,
		"PUT /v1/hosts/{host}/maintenance":         apitoken.Admin,
		"GET /v1/cluster/settings":                 apitoken.Viewer,
		"PUT /v1/cluster/settings":                 apitoken.Admin,
		"GET /v1/cluster/balance":                  apitoken.Viewer,
		"POST /v1/cluster/balance":                 apitoken.Operator,
		"GET /v1/cluster/events":                   apitoken.Viewer,
		"POST /v1/cluster/members":                 apitoken.Admin,
		"POST /v1/networks":                        apitoken.Admin,
		"GET /v1/networks":                         apitoken.Viewer,
		"GET /v1/networks/{name}":                  apitoken.Viewer,
		"DELETE /v1/networks/{name}":               apitoken.Admin,
		"POST /v1/pools":                           apitoken.Admin,
		"GET /v1/pools":                            apitoken.Viewer,
		"GET /v1/pools/{name}":                     apitoken.Viewer,
		"DELETE /v1/pools/{name}":                  apitoken.Admin,
		"GET /v1/pools/{name}/volumes":             apitoken.Viewer,
		"POST /v1/pools/{name}/volumes":            apitoken.Admin,
		"GET /v1/pools/{name}/volumes/{volume}":    apitoken.Viewer,
		"DELETE /v1/pools/{name}/volumes/{volume}": apitoken.Admin,
		"POST /v1/pools/{name}/imports":            apitoken.Admin,
		"GET /v1/usage":                            apitoken.Viewer,
		"GET /v1/audit":                            apitoken.Admin,
		"GET /metrics":                             apitoken.Viewer,
		"/":                                        apitoken.Viewer,
	}
	routes := httpapi.Routes()
	if len(routes) != len(want) {
		t.Errorf("%d routes, %d in this table: place the new ones", len(routes), len(want))
	}
	for _, p := range routes {
		w, ok := want[p]
		if !ok {
			t.Errorf("route %s: not in this table", p)
			continue
		}
		if got := apiguard.Need(p); got != w {
			t.Errorf("%s needs %s, want %s", p, got, w)
		}
	}
}

// guarded is one route behind a Guard, as the agent serves it.
func guarded(t *testing.T, g *apiguard.Guard, pattern string, h http.HandlerFunc) http.Handler {
	t.Helper()
	m := http.NewServeMux()
	m.Handle(pattern, g.Wrap(pattern, h))
	return m
}

func as(r *http.Request, who apitoken.Identity) *http.Request {
	return r.WithContext(apitoken.WithIdentity(r.Context(), who))
}

// TestWrap checks the order of the guard's answers and what each records.
func TestWrap(t *testing.T) {
	log, err := audit.Open(filepath.Join(t.TempDir(), audit.FileName))
	if err != nil {
		t.Fatal(err)
	}
	g := &apiguard.Guard{Audit: log, MaxBody: 16}
	reached := 0
	h := guarded(t, g, "POST /v1/vms/{name}/{action}", func(w http.ResponseWriter, r *http.Request) {
		reached++
		if _, err := io.ReadAll(r.Body); err != nil {
			// What httpapi.DecodeObject makes of a cut body.
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	viewer := apitoken.Identity{Name: "v", Role: apitoken.Viewer}
	op := apitoken.Identity{Name: "o", Role: apitoken.Operator}
	chunked := httptest.NewRequest("POST", "/v1/vms/a/stop", io.MultiReader(strings.NewReader(strings.Repeat("x", 40))))
	chunked.ContentLength = -1
	cases := []struct {
		r    *http.Request
		code int
		msg  string
	}{
		{httptest.NewRequest("POST", "/v1/vms/a/stop", nil), 403, "no identity"},
		{as(httptest.NewRequest("POST", "/v1/vms/a/stop", nil), viewer), 403, "token v has the viewer role: POST /v1/vms/a/stop needs operator"},
		{as(httptest.NewRequest("POST", "/v1/vms/a/stop", strings.NewReader(strings.Repeat("x", 17))), op), 413, "limit of 16 bytes"},
		{as(chunked, op), 413, "too large"},
		{as(httptest.NewRequest("POST", "/v1/vms/a/stop", strings.NewReader("{}")), op), 202, ""},
	}
	for i, c := range cases {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, c.r)
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.msg) {
			t.Errorf("case %d: %d %s, want %d %q", i, rec.Code, rec.Body, c.code, c.msg)
		}
	}
	if reached != 2 {
		t.Errorf("the handler ran %d times, want 2 (the chunked body and the good one)", reached)
	}
	l, err := log.Read(audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	// The request without identity is not attributable: not recorded.
	wantCodes := []int{403, 413, 413, 202}
	if len(l.Items) != len(wantCodes) {
		t.Fatalf("audit: %+v", l.Items)
	}
	for i, r := range l.Items {
		if r.Status != wantCodes[i] || r.Target != "vms/a" || r.Path != "/v1/vms/a/stop" {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if l.Items[0].Who != "v" || l.Items[0].Role != "viewer" || l.Items[3].Who != "o" {
		t.Errorf("who: %+v", l.Items)
	}
}

// TestRateLimited checks 429 and its Retry-After, per token.
func TestRateLimited(t *testing.T) {
	g := &apiguard.Guard{Limit: apiguard.NewLimiter(0.5, 2)}
	h := guarded(t, g, "GET /v1/vms", func(w http.ResponseWriter, r *http.Request) {})
	a, b := apitoken.Identity{Name: "a", Role: apitoken.Viewer}, apitoken.Identity{Name: "b", Role: apitoken.Viewer}
	get := func(who apitoken.Identity) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, as(httptest.NewRequest("GET", "/v1/vms", nil), who))
		return rec
	}
	for i := range 2 {
		if rec := get(a); rec.Code != 200 {
			t.Fatalf("request %d within the burst: %d", i, rec.Code)
		}
	}
	rec := get(a)
	var e api.Error
	json.Unmarshal(rec.Body.Bytes(), &e)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "2" || !strings.Contains(e.Message, "token a") {
		t.Fatalf("over the burst: %d Retry-After %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if rec := get(b); rec.Code != 200 {
		t.Errorf("another token: %d", rec.Code)
	}
	for range 10 {
		if rec := get(apitoken.Local); rec.Code != 200 {
			t.Fatalf("the socket: %d", rec.Code)
		}
	}
}
