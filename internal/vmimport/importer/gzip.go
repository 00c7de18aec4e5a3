package importer

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/gzip"
)

// expandGzip makes s resolve the files its VM names as gzip-compressed
// (vmimport.VM.Gzip: an OVF File with compression="gzip") to expanded
// copies in a folder of their own under outDir, made on first use and
// removed with s.
func expandGzip(s *source, outDir string) {
	if len(s.vm.Gzip) == 0 {
		return
	}
	resolve, cleanup := s.resolve, s.cleanup
	var dir string
	expanded := map[string]string{}
	s.cleanup = func() {
		if dir != "" {
			os.RemoveAll(dir)
		}
		cleanup()
	}
	s.resolve = func(name string) (string, error) {
		p, err := resolve(name)
		if err != nil || !s.vm.Gzip[name] {
			return p, err
		}
		if e, ok := expanded[name]; ok {
			return e, nil
		}
		if dir == "" {
			if dir, err = os.MkdirTemp(outDir, ".gv-gunzip-"); err != nil {
				return "", fmt.Errorf("import: %w", err)
			}
		}
		out := filepath.Join(dir, fmt.Sprintf("%d", len(expanded)))
		if err := gunzip(p, out, maxDiskSize); err != nil {
			return "", fmt.Errorf("import: %s (gzip-compressed, as the OVF says): %w", name, err)
		}
		expanded[name] = out
		return out, nil
	}
}

// gunzip expands the gzip file in to out, refusing more than max bytes (a
// small file can expand to any size).
func gunzip(in, out string, max int64) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	defer zr.Close()
	w, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(w, io.LimitReader(zr, max+1))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > max {
		err = fmt.Errorf("it expands to more than %d bytes", max)
	}
	return err
}
