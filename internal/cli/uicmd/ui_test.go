package uicmd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/govisor/govisor/internal/webauth"
)

// fakeAgent serves on a Unix socket what the proxy must pass on: an API
// route that names the method and Host it saw, and a WebSocket echo with
// gorilla's default origin check (as the agent's console route has).
func fakeAgent(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/vms", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+r.Host)
	})
	mux.HandleFunc("/v1/vms/a/console", func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			k, m, err := ws.ReadMessage()
			if err != nil {
				return
			}
			ws.WriteMessage(k, append([]byte("echo:"), m...))
		}
	})
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "console files") })
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// syncBuffer is a bytes.Buffer safe to read while Serve writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServe(t *testing.T) {
	sock := fakeAgent(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, "127.0.0.1:0", time.Hour, &out) }()
	linkRE := regexp.MustCompile(`http://(127\.0\.0\.1:\d+)` + regexp.QuoteMeta(webauth.LinkPath) + `\?token=\S+`)
	var link, addr string
	for deadline := time.Now().Add(10 * time.Second); link == ""; time.Sleep(10 * time.Millisecond) {
		if m := linkRE.FindStringSubmatch(out.String()); m != nil {
			link, addr = m[0], m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no login link printed: %q", out.String())
		}
	}
	base := "http://" + addr
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	do := func(method, path string, hdr ...string) (int, string) {
		t.Helper()
		r, _ := http.NewRequest(method, base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Before the link: the console's files, nothing else.
	if code, body := do("GET", "/ui/"); code != 200 || body != "console files" {
		t.Errorf("GET /ui/ before login: %d %q", code, body)
	}
	if code, _ := do("GET", "/v1/vms"); code != 401 {
		t.Errorf("GET /v1/vms before login: %d", code)
	}
	if code, _ := do("GET", "/v1/vms", "Authorization", "Bearer anything"); code != 401 {
		t.Errorf("a bearer token through the proxy: %d", code)
	}
	// The link opens a session (the client follows the redirect to /ui/).
	if code, body := do("GET", strings.TrimPrefix(link, base)); code != 200 || body != "console files" {
		t.Fatalf("the link: %d %q", code, body)
	}
	code, body := do("GET", "/v1/vms")
	if code != 200 || body != "GET "+addr {
		t.Errorf("GET /v1/vms with the session: %d %q (want the browser's Host %s)", code, body, addr)
	}
	// A second browser cannot use the link again.
	if resp, err := http.Get(link); err != nil || resp.StatusCode != 401 {
		t.Errorf("the link a second time: %v %v", resp.StatusCode, err)
	}
	// Changes need the session's CSRF token.
	if code, _ := do("POST", "/v1/vms"); code != 403 {
		t.Errorf("POST without CSRF: %d", code)
	}
	_, sess := do("GET", webauth.SessionPath)
	var si webauth.SessionInfo
	if err := json.Unmarshal([]byte(sess), &si); err != nil || si.CSRFToken == "" || si.Open {
		t.Fatalf("session: %q %v", sess, err)
	}
	if code, body := do("POST", "/v1/vms", webauth.CSRFHeader, si.CSRFToken); code != 200 || !strings.HasPrefix(body, "POST ") {
		t.Errorf("POST with CSRF: %d %q", code, body)
	}
	// The console's WebSocket goes through, with the page's origin.
	h := http.Header{"Origin": {base}}
	for _, ck := range jar.Cookies(mustURL(t, base)) {
		h.Add("Cookie", ck.Name+"="+ck.Value)
	}
	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/vms/a/console", h)
	if err != nil {
		t.Fatalf("WebSocket through the proxy: %v (%v)", err, resp)
	}
	ws.WriteMessage(websocket.BinaryMessage, []byte("hi"))
	if _, m, err := ws.ReadMessage(); err != nil || string(m) != "echo:hi" {
		t.Errorf("WebSocket echo: %q %v", m, err)
	}
	ws.Close()

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
}

func TestServeRefuses(t *testing.T) {
	sock := fakeAgent(t)
	for _, tc := range []struct{ socket, listen, want string }{
		{sock, "0.0.0.0:0", "loopback"},
		{sock, "192.0.2.1:80", "loopback"},
		{sock, "localhost", "--listen"},
		{filepath.Join(t.TempDir(), "none.sock"), "127.0.0.1:0", "no agent"},
	} {
		err := Serve(context.Background(), tc.socket, tc.listen, time.Hour, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Serve(%s, %s): %v, want %q", tc.socket, tc.listen, err, tc.want)
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
