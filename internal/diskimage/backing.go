package diskimage

import (
	"errors"
	"fmt"
	"io"
)

// ReadBacking reads p at guest offset off from parent, the image under a
// differencing disk: what lies past the parent's end, and everything when
// parent is nil (opened with NoBacking), reads as zeros.
func ReadBacking(parent Image, p []byte, off int64) error {
	n := int64(0)
	if parent != nil {
		n = max(0, min(int64(len(p)), parent.VirtualSize()-off))
	}
	if n > 0 {
		if _, err := parent.ReadAt(p[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read parent at %#x: %w", off, err)
		}
	}
	clear(p[n:])
	return nil
}

// BackingChain is Info.BackingChain of an image over backing, opened
// from path: path, then backing's own chain.
func BackingChain(path string, backing Image) []string {
	chain := []string{path}
	if in, ok := backing.(Infoer); ok {
		chain = append(chain, in.Info().BackingChain...)
	}
	return chain
}

// ExtentList builds a Map result, merging adjacent runs of the same kind.
type ExtentList []Extent

// Add appends e, merging it into the last run when they touch and agree.
func (l *ExtentList) Add(e Extent) {
	if k := len(*l); k > 0 && (*l)[k-1].Zero == e.Zero && (*l)[k-1].Offset+(*l)[k-1].Length == e.Offset {
		(*l)[k-1].Length += e.Length
		return
	}
	*l = append(*l, e)
}

// AddBacking adds the runs of [off, off+n) as parent maps them: zero past
// its end or without a parent, data where parent cannot map.
func (l *ExtentList) AddBacking(parent Image, off, n int64) error {
	if parent == nil || off >= parent.VirtualSize() {
		l.Add(Extent{Offset: off, Length: n, Zero: true})
		return nil
	}
	pm, ok := parent.(Mapper)
	if !ok {
		l.Add(Extent{Offset: off, Length: n})
		return nil
	}
	pn := min(n, parent.VirtualSize()-off)
	ext, err := pm.Map(off, pn)
	if err != nil {
		return err
	}
	for _, e := range ext {
		l.Add(e)
	}
	if pn < n {
		l.Add(Extent{Offset: off + pn, Length: n - pn, Zero: true})
	}
	return nil
}
