// Package webui holds the web console's built bundle (web/, issue 14) and
// serves it at /ui/. The bundle is committed, so `go build` alone gives an
// agent with its console; TestBundleUpToDate rebuilds it from web/ and
// fails if the committed files differ.
package webui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed all:dist
var dist embed.FS

// Prefix is where the console is served.
const Prefix = "/ui/"

// file is one file of the bundle, ready to serve.
type file struct {
	body, gz    []byte
	contentType string
	etag        string
}

// Files returns the bundle's files by path under dist (for tests).
func Files() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := dist.ReadFile(p)
		out[strings.TrimPrefix(p, "dist/")] = b
		return err
	})
	return out, err
}

// Handler serves the console's files under Prefix, gzipped for clients that
// take it, with an ETag (the names are fixed, so browsers revalidate).
func Handler() http.Handler {
	files := map[string]*file{}
	raw, err := Files()
	if err != nil {
		// The embedded tree is part of the binary: unreadable means a broken build.
		panic("webui: embedded bundle: " + err.Error())
	}
	for p, b := range raw {
		var z bytes.Buffer
		w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		w.Write(b)
		w.Close()
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = http.DetectContentType(b)
		}
		files[p] = &file{body: b, gz: z.Bytes(), contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ui" {
			http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, Prefix)
		if name == "" {
			name = "index.html"
		}
		f, ok := files[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		securityHeaders(h)
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		h.Set("Vary", "Accept-Encoding")
		if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, f.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body := f.body
		if acceptsGzip(r) {
			h.Set("Content-Encoding", "gzip")
			body = f.gz
		}
		w.Write(body)
	})
}

// securityHeaders keeps the console to its own origin: scripts and
// connections only from the agent (the WebSocket console included), no
// framing by other sites (clickjacking). Inline styles are allowed:
// xterm.js and uPlot set element styles and xterm adds a style sheet.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

func acceptsGzip(r *http.Request) bool {
	for _, e := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		if strings.TrimSpace(strings.SplitN(e, ";", 2)[0]) == "gzip" {
			return true
		}
	}
	return false
}
