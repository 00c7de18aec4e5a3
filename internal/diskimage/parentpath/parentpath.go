// Package parentpath finds the parent of a differencing disk (a VMware
// snapshot, a Hyper-V differencing VHD or checkpoint AVHDX): it lists the
// places the child's recorded paths may point at once a chain has been
// copied off the host that wrote it, and opens the first one that is
// really the parent, as the format's identity check (VMDK CID, VHD unique
// ID, VHDX DataWriteGuid) says.
package parentpath

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/govisor/govisor/internal/diskimage"
)

// Candidates collects where a parent may be, best first, each path once.
// Every path added has its Windows separators turned into slashes; empty
// paths are passed over.
type Candidates struct {
	dir   string
	paths []string
}

// For starts an empty list for the differencing disk at child.
func For(child string) *Candidates {
	return &Candidates{dir: filepath.Dir(child)}
}

// slash turns Windows separators into slashes: a chain made on Windows
// records C:\VMs\base.vhd or .\base.vhd.
func slash(p string) string { return strings.ReplaceAll(p, `\`, "/") }

// add appends p unless it is listed already.
func (c *Candidates) add(p string) {
	for _, x := range c.paths {
		if x == p {
			return
		}
	}
	c.paths = append(c.paths, p)
}

// Relative adds p taken relative to the child's folder.
func (c *Candidates) Relative(p string) {
	if p = slash(p); p != "" {
		c.add(filepath.Join(c.dir, p))
	}
}

// Absolute adds p if it is an absolute path of this host; a Windows drive
// path (C:/VMs/base.vhd) names nothing here and is passed over.
func (c *Candidates) Absolute(p string) {
	if p = slash(p); strings.HasPrefix(p, "/") {
		c.add(p)
	}
}

// Recorded adds p as a writer that may have recorded either kind records
// it: an absolute host path as it is, a Windows drive path not at all,
// anything else relative to the child's folder.
func (c *Candidates) Recorded(p string) {
	switch p = slash(p); {
	case len(p) > 1 && p[1] == ':':
	case strings.HasPrefix(p, "/"):
		c.add(p)
	default:
		c.Relative(p)
	}
}

// Beside adds the file name of p (its last element, without a drive
// letter as in "C:base.vmdk") in the child's folder: a chain copied off
// its host keeps its files together though the recorded paths name the
// old host's folders.
func (c *Candidates) Beside(p string) {
	p = slash(p)
	b := p[strings.LastIndexByte(p, '/')+1:]
	if len(b) > 1 && b[1] == ':' {
		b = b[2:]
	}
	if b != "" && b != "." && b != ".." {
		c.add(filepath.Join(c.dir, b))
	}
}

// List returns the paths added, best first.
func (c *Candidates) List() []string { return c.paths }

// Check says why the image opened from a candidate is not the parent the
// child names ("has CID 0000beef, the child wants 00001000"), "" if it is.
type Check func(p diskimage.Image) string

// Found is what Open found.
type Found struct {
	// Image is the parent, nil if no candidate is it.
	Image diskimage.Image
	// Path is the candidate Image was opened from.
	Path string
	// Wrong has a line for each candidate that exists but failed the
	// check: its path and why.
	Wrong []string
}

// Open opens the parent of the differencing disk at child from the first
// of cands that exists and passes check; an image that fails it is closed
// and the next candidate tried, so a stale file of the parent's name is
// never read as the parent. opts are the child's (they carry the chain,
// against loops). An error opening an existing candidate ends the search
// and is returned as diskimage.OpenBacking gives it; that nothing matched
// is no error (Found.Image is nil): the caller words it for its format.
func Open(child string, cands []string, opts diskimage.OpenOptions, check Check) (Found, error) {
	var f Found
	for _, c := range cands {
		if _, err := os.Stat(c); err != nil {
			continue
		}
		p, err := diskimage.OpenBacking(child, c, "", opts)
		if err != nil {
			return f, err
		}
		if why := check(p); why != "" {
			p.Close()
			f.Wrong = append(f.Wrong, fmt.Sprintf("%s %s", c, why))
			continue
		}
		f.Image, f.Path = p, c
		return f, nil
	}
	return f, nil
}
