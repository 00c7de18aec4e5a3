package ova

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"regexp"
	"strings"
)

// manifestEntry is one digest line of a .mf manifest (DSP0243 section 5.3):
// "SHA256(disk1.vmdk)= 3a7f...".
type manifestEntry struct {
	Algo   string // SHA1, SHA256 or SHA512
	Digest string // lower-case hex
}

var manifestRE = regexp.MustCompile(`^(SHA1|SHA256|SHA512)\s*\(([^)]+)\)\s*=\s*([0-9a-fA-F]+)$`)

// parseManifest reads a manifest into file name -> digest.
func parseManifest(text string) (map[string]manifestEntry, error) {
	out := map[string]manifestEntry{}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		m := manifestRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("%w: manifest line %d: %q", ErrBadArchive, n+1, line)
		}
		e := manifestEntry{Algo: m[1], Digest: strings.ToLower(m[3])}
		if len(e.Digest) != 2*newHash(e.Algo).Size() {
			return nil, fmt.Errorf("%w: manifest line %d: %s digest of %d hex digits", ErrBadArchive, n+1, e.Algo, len(e.Digest))
		}
		out[m[2]] = e
	}
	return out, nil
}

func newHash(algo string) hash.Hash {
	switch algo {
	case "SHA1":
		return sha1.New()
	case "SHA512":
		return sha512.New()
	}
	return sha256.New()
}

// hashSet computes the digests a manifest may ask for while a file streams
// through it: only the algorithm named when the manifest is already known,
// all three otherwise.
type hashSet map[string]hash.Hash

func newHashSet(want *manifestEntry) hashSet {
	if want != nil {
		return hashSet{want.Algo: newHash(want.Algo)}
	}
	return hashSet{"SHA1": sha1.New(), "SHA256": sha256.New(), "SHA512": sha512.New()}
}

func (hs hashSet) Write(p []byte) (int, error) {
	for _, h := range hs {
		h.Write(p)
	}
	return len(p), nil
}

func (hs hashSet) sum(algo string) (string, bool) {
	h, ok := hs[algo]
	if !ok {
		return "", false
	}
	return fmt.Sprintf("%x", h.Sum(nil)), true
}
