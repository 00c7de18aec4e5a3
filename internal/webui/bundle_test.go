package webui_test

import (
	"bytes"
	"compress/gzip"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/webui"
)

// maxGzip bounds the whole bundle, gzipped (issue 14: under 300 KB).
const maxGzip = 300 << 10

func TestBundleSize(t *testing.T) {
	files, err := webui.Files()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files["index.html"]; !ok {
		t.Fatalf("no index.html in the bundle: %v", slices.Sorted(maps.Keys(files)))
	}
	total := 0
	for name, b := range files {
		var z bytes.Buffer
		w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		w.Write(b)
		w.Close()
		total += z.Len()
		t.Logf("%-24s %7d bytes, %6d gzipped", name, len(b), z.Len())
	}
	t.Logf("bundle: %d bytes gzipped (limit %d)", total, maxGzip)
	if total > maxGzip {
		t.Errorf("the bundle is %d bytes gzipped, over the %d limit", total, maxGzip)
	}
}

// TestBundleUpToDate rebuilds the bundle from web/ with the lockfile's
// packages and fails if the committed internal/webui/dist differs: the
// binary must carry what the sources say. Fix: cd web && npm ci && npm
// run build, and commit internal/webui/dist.
func TestBundleUpToDate(t *testing.T) {
	npmCI(t)
	out := t.TempDir()
	npx(t, "vite", "build", "--outDir", out, "--emptyOutDir", "--logLevel", "warn")
	built := map[string][]byte{}
	err := filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(out, p)
		built[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	committed, err := webui.Files()
	if err != nil {
		t.Fatal(err)
	}
	const fix = "rebuild: cd web && npm ci && npm run build; commit internal/webui/dist"
	for name, b := range built {
		c, ok := committed[name]
		switch {
		case !ok:
			t.Errorf("%s is built but not committed (%s)", name, fix)
		case !bytes.Equal(b, c):
			t.Errorf("%s differs from the committed bundle (%d bytes built, %d committed; %s)", name, len(b), len(c), fix)
		}
	}
	for name := range committed {
		if _, ok := built[name]; !ok {
			t.Errorf("%s is committed but no longer built (%s)", name, fix)
		}
	}
}

// TestFrontendUnit runs the front-end's own checks: the TypeScript type
// check and its unit tests (vitest, web/src/*.test.ts).
func TestFrontendUnit(t *testing.T) {
	npmCI(t)
	npx(t, "tsc", "--noEmit")
	out := npx(t, "vitest", "run", "--reporter=dot")
	if !strings.Contains(string(out), "passed") {
		t.Errorf("vitest says:\n%s", out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
}
