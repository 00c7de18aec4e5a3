package cpubaseline

import (
	"fmt"
	"slices"
	"strings"
)

// maxFeatureLen bounds a feature name (the longest /proc/cpuinfo flag is
// about 30 characters).
const maxFeatureLen = 64

// ParseFeatures reads a feature list as /proc/cpuinfo's "flags" line or a
// user writes it: names separated by spaces or commas ("avx2 sse4_2",
// "avx2,sse4_2"). It returns them lower-cased, deduplicated and sorted.
func ParseFeatures(s string) ([]string, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		f = strings.ToLower(f)
		if len(f) > maxFeatureLen {
			return nil, fmt.Errorf("cpubaseline: feature %.20q... has %d characters (at most %d): separate features with spaces or commas", f, len(f), maxFeatureLen)
		}
		for _, c := range f {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
				return nil, fmt.Errorf("cpubaseline: feature %q has %q: write names as /proc/cpuinfo flags (letters, digits, '_', '.', '-'), separated by spaces or commas", f, c)
			}
		}
		out = append(out, f)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
