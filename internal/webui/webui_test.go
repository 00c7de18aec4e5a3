package webui_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/webui"
)

func TestHandler(t *testing.T) {
	h := webui.Handler()
	files, _ := webui.Files()
	get := func(method, path string, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	for _, tc := range []struct {
		name, method, path string
		hdr                []string
		code               int
		ctype, encoding    string
		body               []byte
	}{
		{"index", "GET", "/ui/", nil, 200, "text/html; charset=utf-8", "", files["index.html"]},
		{"index by name", "GET", "/ui/index.html", nil, 200, "text/html; charset=utf-8", "", files["index.html"]},
		{"script gzipped", "GET", "/ui/assets/index.js", []string{"Accept-Encoding", "br, gzip;q=0.9"}, 200, "text/javascript; charset=utf-8", "gzip", files["assets/index.js"]},
		{"style", "GET", "/ui/assets/index.css", nil, 200, "text/css; charset=utf-8", "", files["assets/index.css"]},
		{"head", "HEAD", "/ui/", nil, 200, "text/html; charset=utf-8", "", nil},
		{"missing", "GET", "/ui/assets/nope.js", nil, 404, "", "", nil},
		{"no directory listing", "GET", "/ui/assets/", nil, 404, "", "", nil},
		{"no POST", "POST", "/ui/", nil, 405, "", "", nil},
		{"redirect", "GET", "/ui", nil, 301, "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(tc.method, tc.path, tc.hdr...)
			if rec.Code != tc.code {
				t.Fatalf("%s %s: %d, want %d", tc.method, tc.path, rec.Code, tc.code)
			}
			if tc.code != 200 {
				return
			}
			hd := rec.Header()
			if hd.Get("Content-Type") != tc.ctype || hd.Get("Content-Encoding") != tc.encoding {
				t.Errorf("Content-Type %q, Content-Encoding %q; want %q, %q", hd.Get("Content-Type"), hd.Get("Content-Encoding"), tc.ctype, tc.encoding)
			}
			if csp := hd.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || hd.Get("X-Frame-Options") != "DENY" {
				t.Errorf("security headers: %v", hd)
			}
			body := rec.Body.Bytes()
			if tc.encoding == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				body, _ = io.ReadAll(zr)
			}
			if tc.body != nil && !bytes.Equal(body, tc.body) {
				t.Errorf("body differs from the bundle's file (%d bytes, want %d)", len(body), len(tc.body))
			}
		})
	}
	// Revalidation: the same ETag gets a 304.
	etag := get("GET", "/ui/assets/index.js").Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if rec := get("GET", "/ui/assets/index.js", "If-None-Match", etag); rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Errorf("If-None-Match %s: %d with %d bytes", etag, rec.Code, rec.Body.Len())
	}
	if rec := get("GET", "/ui/assets/index.js", "If-None-Match", `"other"`); rec.Code != 200 {
		t.Errorf("If-None-Match of another version: %d", rec.Code)
	}
}
