// Package ova unpacks an OVA (DMTF DSP0243 "Open Virtualization Format
// Specification" section 5.3: a tar holding an OVF descriptor, an optional
// manifest and the disks), checking the manifest digests. The descriptor
// is read by vmimport/ovf and the disks converted by vmimport/importer
// (`govisor import ova`).
package ova

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/govisor/govisor/internal/vmimport"
)

// Sentinel errors of the ova package.
var (
	ErrBadArchive     = errors.New("ova: bad archive")
	ErrDigestMismatch = errors.New("ova: manifest digest mismatch")
)

const maxManifestSize = 1 << 20

// maxOVFSize caps the descriptor read into memory (real ones are tens of
// KiB): what vmimport/ovf parses at most.
const maxOVFSize = vmimport.MaxFileSize

// member is a file unpacked from the archive.
type member struct {
	path   string // extracted copy, empty for the .ovf and .mf
	hashes hashSet
}

// Package is an unpacked OVA whose manifest digests matched.
type Package struct {
	// OVF is the descriptor's text.
	OVF []byte
	// Files maps each other member's name to its extracted copy.
	Files map[string]string
}

// Unpack extracts the OVA at ovaPath into dir, a folder of its own,
// checks every digest its manifest lists, and returns the descriptor and
// the extracted files; on error nothing is left behind. Members keep their
// names, so that a delta disk finds the parent it names next to it (a
// VMDK's parentFileNameHint, a VHD's parent locator).
func Unpack(ovaPath, dir string) (*Package, error) {
	f, err := os.Open(ovaPath)
	if err != nil {
		return nil, fmt.Errorf("ova: %w", err)
	}
	defer f.Close()
	members := map[string]*member{}
	pkg := &Package{Files: map[string]string{}}
	ovfText, manifest, err := unpack(f, dir, members)
	if err == nil {
		err = verify(manifest, members)
	}
	for name, m := range members {
		if m.path != "" {
			pkg.Files[name] = m.path
		}
	}
	if err != nil {
		pkg.Remove()
		return nil, fmt.Errorf("ova: %s: %w", ovaPath, err)
	}
	pkg.OVF = ovfText
	return pkg, nil
}

// Remove deletes the extracted files.
func (p *Package) Remove() {
	for _, f := range p.Files {
		os.Remove(f)
	}
}

// unpack streams the tar once: the .ovf and .mf are kept in memory (their
// sizes capped), every other regular file is extracted into dir
// while its digests are computed. DSP0243 section 5.3 puts the descriptor
// first and the manifest second, so usually only the digest the manifest
// asks for is computed.
func unpack(r io.Reader, dir string, members map[string]*member) ([]byte, map[string]manifestEntry, error) {
	tr := tar.NewReader(r)
	var ovfText []byte
	var manifest map[string]manifestEntry
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrBadArchive, err)
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if h.Typeflag != tar.TypeReg || !filepath.IsLocal(name) || strings.Contains(name, "/") {
			return nil, nil, fmt.Errorf("%w: member %q is not a plain top-level file", ErrBadArchive, h.Name)
		}
		if _, dup := members[name]; dup {
			return nil, nil, fmt.Errorf("%w: member %q appears twice", ErrBadArchive, name)
		}
		var want *manifestEntry
		if e, ok := manifest[name]; ok {
			want = &e
		}
		m := &member{hashes: newHashSet(want)}
		members[name] = m
		switch ext := strings.ToLower(path.Ext(name)); {
		case ext == ".ovf" && ovfText == nil:
			if ovfText, err = readCapped(io.TeeReader(tr, m.hashes), maxOVFSize); err != nil {
				return nil, nil, fmt.Errorf("descriptor %s: %w", name, err)
			}
		case ext == ".mf" && manifest == nil:
			text, err := readCapped(tr, maxManifestSize)
			if err != nil {
				return nil, nil, fmt.Errorf("manifest %s: %w", name, err)
			}
			if manifest, err = parseManifest(string(text)); err != nil {
				return nil, nil, err
			}
		case ext == ".cert":
			// Signature certificates are not verified; the manifest is.
		default:
			m.path = filepath.Join(dir, name)
			if err := extract(tr, m.path, m.hashes); err != nil {
				return nil, nil, fmt.Errorf("extract %s: %w", name, err)
			}
		}
	}
	if ovfText == nil {
		return nil, nil, fmt.Errorf("%w: no .ovf descriptor", ErrBadArchive)
	}
	return ovfText, manifest, nil
}

func readCapped(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadArchive, limit)
	}
	return b, nil
}

func extract(r io.Reader, dst string, hs hashSet) error {
	// Never over a file that is there: dir is the caller's alone, and a
	// member appears once.
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.MultiWriter(f, hs), r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// verify checks every manifest digest against the member it names.
func verify(manifest map[string]manifestEntry, members map[string]*member) error {
	for name, e := range manifest {
		m, ok := members[name]
		if !ok {
			return fmt.Errorf("%w: %s is listed but not in the archive", ErrDigestMismatch, name)
		}
		got, ok := m.hashes.sum(e.Algo)
		if !ok {
			return fmt.Errorf("%w: %s: no %s digest computed", ErrDigestMismatch, name, e.Algo)
		}
		if got != e.Digest {
			return fmt.Errorf("%w: %s: %s is %s, manifest says %s", ErrDigestMismatch, name, e.Algo, got, e.Digest)
		}
	}
	return nil
}
