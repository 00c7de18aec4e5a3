package webauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/govisor/govisor/internal/apitoken"
)

// TestIdentityReachesAPI checks that the API behind Auth learns who each
// request is, by bearer token and by the session a token opened (issue 15:
// a viewer's browser session stays a viewer's).
func TestIdentityReachesAPI(t *testing.T) {
	viewer := apitoken.Identity{Name: "alice", Role: apitoken.Viewer}
	var got apitoken.Identity
	a := &Auth{
		Tokens: []string{"adm"},
		Lookup: func(s string) (apitoken.Identity, bool) {
			return viewer, s == "ro"
		},
		Sessions: NewSessions(0),
	}
	h := a.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = apitoken.FromContext(r.Context())
	}))
	for tok, want := range map[string]apitoken.Identity{"ro": viewer, "adm": {Name: apitoken.DefaultName("adm"), Role: apitoken.Admin}} {
		r := httptest.NewRequest("GET", "/v1/vms", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got != want {
			t.Errorf("bearer %s: %+v, want %+v", tok, got, want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, jsonPost(LoginPath, `{"token":"ro"}`))
	var si SessionInfo
	if err := json.Unmarshal(rec.Body.Bytes(), &si); err != nil || si.User == nil || *si.User != viewer {
		t.Fatalf("login answer %s: %v", rec.Body, err)
	}
	got = apitoken.Identity{}
	r := httptest.NewRequest("GET", "/v1/vms", nil)
	r.AddCookie(rec.Result().Cookies()[0])
	h.ServeHTTP(httptest.NewRecorder(), r)
	if got != viewer {
		t.Errorf("session: %+v, want %+v", got, viewer)
	}
	got = apitoken.Identity{}
	Open(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = apitoken.FromContext(r.Context())
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/v1/vms", nil))
	if got != apitoken.Local {
		t.Errorf("socket: %+v", got)
	}
}
