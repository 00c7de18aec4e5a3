package webauth

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/apitoken"
)

const goodToken = "s3cret-token"

// fixture is an Auth over a fake clock, with one session opened by login.
type fixture struct {
	auth    *Auth
	h       http.Handler
	now     time.Time
	cookie  *http.Cookie
	csrf    string
	reached int // requests that got through to the API
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{now: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)}
	s := NewSessions(time.Hour)
	s.now = func() time.Time { return f.now }
	f.auth = &Auth{Tokens: []string{"other-token", goodToken}, Sessions: s}
	f.h = f.auth.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.reached++
		w.WriteHeader(http.StatusTeapot)
	}))
	rec := f.do(jsonPost(LoginPath, `{"token":"`+goodToken+`"}`))
	if rec.Code != http.StatusOK {
		t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	var si SessionInfo
	if err := json.Unmarshal(rec.Body.Bytes(), &si); err != nil || si.CSRFToken == "" {
		t.Fatalf("login answer %s: %v", rec.Body, err)
	}
	f.csrf = si.CSRFToken
	f.cookie = rec.Result().Cookies()[0]
	return f
}

// jsonPost is a POST of body as JSON.
func jsonPost(path, body string) *http.Request {
	r := httptest.NewRequest("POST", path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return r
}

func (f *fixture) do(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, r)
	return rec
}

func errorOf(t *testing.T, rec *httptest.ResponseRecorder) api.Error {
	t.Helper()
	var e api.Error
	if rec.Code >= 400 && rec.Code != http.StatusTeapot { // the teapot is the API behind
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
			t.Fatalf("error answer %q is not JSON: %v", rec.Body, err)
		}
	}
	return e
}

func TestAuthorize(t *testing.T) {
	type req struct {
		method, path string
		bearer       string // Authorization: Bearer ...
		cookie       string // "session": the fixture's; "bogus"; "": none
		csrf         string // "session": the fixture's; other: literal
		after        time.Duration
	}
	for _, tc := range []struct {
		name    string
		req     req
		code    int
		reached bool
		errSub  string
	}{
		{"bearer token", req{method: "GET", path: "/v1/vms", bearer: goodToken}, http.StatusTeapot, true, ""},
		{"bearer token POST needs no CSRF", req{method: "POST", path: "/v1/vms", bearer: goodToken}, http.StatusTeapot, true, ""},
		{"wrong bearer token", req{method: "GET", path: "/v1/vms", bearer: "nope"}, 401, false, "valid bearer token"},
		{"wrong bearer token beside a session cookie", req{method: "GET", path: "/v1/vms", bearer: "nope", cookie: "session"}, 401, false, "valid bearer token"},
		{"nothing", req{method: "GET", path: "/v1/vms"}, 401, false, "valid bearer token"},
		{"session GET", req{method: "GET", path: "/v1/vms", cookie: "session"}, http.StatusTeapot, true, ""},
		{"session WebSocket console", req{method: "GET", path: "/v1/vms/a/console", cookie: "session"}, http.StatusTeapot, true, ""},
		{"session POST with CSRF", req{method: "POST", path: "/v1/vms", cookie: "session", csrf: "session"}, http.StatusTeapot, true, ""},
		{"session DELETE with CSRF", req{method: "DELETE", path: "/v1/vms/a", cookie: "session", csrf: "session"}, http.StatusTeapot, true, ""},
		{"session POST without CSRF", req{method: "POST", path: "/v1/vms", cookie: "session"}, 403, false, "X-CSRF-Token"},
		{"session POST with wrong CSRF", req{method: "POST", path: "/v1/vms/a/stop", cookie: "session", csrf: "forged"}, 403, false, "CSRF token"},
		{"session PUT with the session id as CSRF", req{method: "PUT", path: "/v1/vms/a", cookie: "session", csrf: "cookie"}, 403, false, "CSRF token"},
		{"unknown session", req{method: "GET", path: "/v1/vms", cookie: "bogus"}, 401, false, "not logged in"},
		{"expired session", req{method: "GET", path: "/v1/vms", cookie: "session", after: time.Hour}, 401, false, "session expired"},
		{"session just before expiry", req{method: "GET", path: "/v1/vms", cookie: "session", after: time.Hour - time.Second}, http.StatusTeapot, true, ""},
		{"static files are public", req{method: "GET", path: "/ui/assets/index.js"}, http.StatusTeapot, true, ""},
		{"the console's root is public", req{method: "GET", path: "/ui/"}, http.StatusTeapot, true, ""},
		{"POST under /ui/ is not static", req{method: "POST", path: "/ui/x"}, 401, false, "valid bearer token"},
		{"a dot-dot path is not static", req{method: "GET", path: "/ui/../v1/vms"}, 401, false, "valid bearer token"},
		{"a dot-dot path into the session API is not static", req{method: "GET", path: "/ui/x/../api/session"}, 401, false, "valid bearer token"},
		{"session endpoint with session", req{method: "GET", path: SessionPath, cookie: "session"}, 200, false, ""},
		{"session endpoint without session", req{method: "GET", path: SessionPath}, 401, false, "not logged in"},
		{"session endpoint after expiry", req{method: "GET", path: SessionPath, cookie: "session", after: 2 * time.Hour}, 401, false, "session expired"},
		{"logout without CSRF", req{method: "POST", path: LogoutPath, cookie: "session"}, 403, false, "X-CSRF-Token"},
		{"logout", req{method: "POST", path: LogoutPath, cookie: "session", csrf: "session"}, 204, false, ""},
		{"login with GET", req{method: "GET", path: LoginPath}, 405, false, "POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.now = f.now.Add(tc.req.after)
			r := httptest.NewRequest(tc.req.method, tc.req.path, nil)
			if tc.req.bearer != "" {
				r.Header.Set("Authorization", "Bearer "+tc.req.bearer)
			}
			switch tc.req.cookie {
			case "session":
				r.AddCookie(&http.Cookie{Name: CookieName, Value: f.cookie.Value})
			case "bogus":
				r.AddCookie(&http.Cookie{Name: CookieName, Value: "bogus"})
			}
			switch tc.req.csrf {
			case "":
			case "session":
				r.Header.Set(CSRFHeader, f.csrf)
			case "cookie":
				r.Header.Set(CSRFHeader, f.cookie.Value)
			default:
				r.Header.Set(CSRFHeader, tc.req.csrf)
			}
			rec := f.do(r)
			if rec.Code != tc.code || (f.reached == 1) != tc.reached {
				t.Fatalf("got %d (reached the API: %v), want %d (%v): %s", rec.Code, f.reached == 1, tc.code, tc.reached, rec.Body)
			}
			if e := errorOf(t, rec); !strings.Contains(e.Message, tc.errSub) {
				t.Errorf("error %q, want it to say %q", e.Message, tc.errSub)
			}
		})
	}
}

func TestLogin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		ctype  string // default application/json
		tls    bool
		code   int
		errSub string
	}{
		{"first token", `{"token":"other-token"}`, "", false, 200, ""},
		{"second token over TLS", `{"token":"` + goodToken + `"}`, "application/json; charset=utf-8", true, 200, ""},
		{"wrong token", `{"token":"guess"}`, "", false, 401, "wrong token"},
		{"token prefix", `{"token":"s3cret"}`, "", false, 401, "wrong token"},
		{"empty token", `{"token":""}`, "", false, 401, "wrong token"},
		{"not JSON", `token=` + goodToken, "", false, 400, "JSON"},
		{"unknown field", `{"token":"` + goodToken + `","admin":true}`, "", false, 400, "JSON"},
		{"a form of another site", `{"token":"` + goodToken + `"}`, "text/plain", false, 415, "Content-Type: application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			r := jsonPost(LoginPath, tc.body)
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			rec := f.do(r)
			if rec.Code != tc.code {
				t.Fatalf("got %d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			if tc.code != 200 {
				e := errorOf(t, rec)
				if !strings.Contains(e.Message, tc.errSub) || (e.Field != "token" && tc.code != 415) {
					t.Errorf("error %+v, want it to say %q about field token", e, tc.errSub)
				}
				if len(rec.Result().Cookies()) != 0 {
					t.Errorf("a refused login set a cookie: %v", rec.Result().Cookies())
				}
				return
			}
			var si SessionInfo
			json.Unmarshal(rec.Body.Bytes(), &si)
			cs := rec.Result().Cookies()
			if len(cs) != 1 {
				t.Fatalf("cookies %v", cs)
			}
			c := cs[0]
			if c.Name != CookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure != tc.tls || c.Path != "/" {
				t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, Secure=%v", c, tc.tls)
			}
			if len(c.Value) < 43 || c.Value == f.cookie.Value || si.CSRFToken == f.csrf || si.CSRFToken == c.Value {
				t.Errorf("session id %q and CSRF %q are not fresh random values", c.Value, si.CSRFToken)
			}
			if want := f.now.Add(time.Hour); !si.Expires.Equal(want) || c.MaxAge != int((time.Hour+cookieGrace).Seconds()) {
				t.Errorf("expires %v (max-age %d), want %v", si.Expires, c.MaxAge, want)
			}
			if strings.Contains(rec.Body.String(), c.Value) {
				t.Errorf("the answer's body carries the session id: %s", rec.Body)
			}
		})
	}
}

func TestLogoutEndsSession(t *testing.T) {
	f := newFixture(t)
	r := httptest.NewRequest("POST", LogoutPath, nil)
	r.AddCookie(&http.Cookie{Name: CookieName, Value: f.cookie.Value})
	r.Header.Set(CSRFHeader, f.csrf)
	if rec := f.do(r); rec.Code != 204 || rec.Result().Cookies()[0].MaxAge >= 0 {
		t.Fatalf("logout: %d %v", rec.Code, rec.Result().Cookies())
	}
	r = httptest.NewRequest("GET", "/v1/vms", nil)
	r.AddCookie(&http.Cookie{Name: CookieName, Value: f.cookie.Value})
	if rec := f.do(r); rec.Code != 401 || f.reached != 0 {
		t.Fatalf("after logout: %d %s", rec.Code, rec.Body)
	}
}

func TestExpiredSessionSaysSo(t *testing.T) {
	f := newFixture(t)
	f.now = f.now.Add(time.Hour)
	r := httptest.NewRequest("GET", "/v1/hosts", nil)
	r.AddCookie(&http.Cookie{Name: CookieName, Value: f.cookie.Value})
	// Every request of the page, not only the first, says why.
	for i := range 3 {
		if rec := f.do(r); rec.Code != 401 || !strings.Contains(errorOf(t, rec).Message, "session expired") {
			t.Errorf("request %d after expiry: %d %s", i, rec.Code, rec.Body)
		}
	}
	// A new login gives a new session.
	rec := f.do(jsonPost(LoginPath, `{"token":"`+goodToken+`"}`))
	r = httptest.NewRequest("GET", "/v1/hosts", nil)
	r.AddCookie(rec.Result().Cookies()[0])
	if rec := f.do(r); rec.Code != http.StatusTeapot {
		t.Errorf("after a new login: %d %s", rec.Code, rec.Body)
	}
}

func TestSessionsBounded(t *testing.T) {
	s := NewSessions(time.Minute)
	first, _, _ := s.open(apitoken.Local)
	for range maxSessions {
		s.open(apitoken.Local)
	}
	if len(s.m) != maxSessions {
		t.Fatalf("%d sessions kept, want at most %d", len(s.m), maxSessions)
	}
	if _, err := s.lookup(first); err == nil {
		t.Errorf("the oldest session survived a full store")
	}
}

func TestOpen(t *testing.T) {
	reached := false
	h := Open(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", SessionPath, nil))
	var si SessionInfo
	if json.Unmarshal(rec.Body.Bytes(), &si); rec.Code != 200 || !si.Open {
		t.Errorf("session on an open listener: %d %s", rec.Code, rec.Body)
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/v1/vms", nil))
	if !reached {
		t.Errorf("an open listener did not pass the API through")
	}
}

func TestLoginLink(t *testing.T) {
	f := newFixture(t)
	f.auth.Links = &Links{}
	tok := f.auth.Links.Add()
	other := f.auth.Links.Add()
	for _, tc := range []struct {
		name, method, token string
		code                int
	}{
		{"wrong token", "GET", "guess", 401},
		{"empty token", "GET", "", 401},
		{"POST", "POST", tok, 405},
		{"the link", "GET", tok, http.StatusSeeOther},
		{"the link again", "GET", tok, 401},
		{"another link still works", "GET", other, http.StatusSeeOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := f.do(httptest.NewRequest(tc.method, LinkPath+"?token="+tc.token, nil))
			if rec.Code != tc.code {
				t.Fatalf("%d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			cs := rec.Result().Cookies()
			if tc.code != http.StatusSeeOther {
				if len(cs) != 0 {
					t.Errorf("a refused link set a cookie")
				}
				return
			}
			if rec.Header().Get("Location") != "/ui/" || len(cs) != 1 || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode {
				t.Fatalf("redirect to %q with cookies %v", rec.Header().Get("Location"), cs)
			}
			// The session works like a login's.
			r := httptest.NewRequest("GET", "/v1/vms", nil)
			r.AddCookie(cs[0])
			if rec := f.do(r); rec.Code != http.StatusTeapot {
				t.Errorf("with the link's session: %d %s", rec.Code, rec.Body)
			}
		})
	}
	// Without Links, there are no links.
	f.auth.Links = nil
	if rec := f.do(httptest.NewRequest("GET", LinkPath+"?token="+tok, nil)); rec.Code != 401 {
		t.Errorf("no links: %d", rec.Code)
	}
}
