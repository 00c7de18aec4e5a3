package diskimage

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize parses a byte count with an optional K, M, G, T, P or E suffix
// (powers of 1024; a trailing "B" or "iB" is accepted).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "iB"), "B")
	if t == "" {
		return 0, fmt.Errorf("diskimage: invalid size %q", s)
	}
	shift := 0
	switch strings.ToUpper(t[len(t)-1:]) {
	case "K":
		shift = 10
	case "M":
		shift = 20
	case "G":
		shift = 30
	case "T":
		shift = 40
	case "P":
		shift = 50
	case "E":
		shift = 60
	}
	if shift > 0 {
		t = t[:len(t)-1]
	}
	if strings.Contains(t, ".") {
		f, err := strconv.ParseFloat(t, 64)
		if err != nil || f < 0 || f*float64(int64(1)<<shift) >= 1<<63 {
			return 0, fmt.Errorf("diskimage: invalid size %q", s)
		}
		return int64(f * float64(int64(1)<<shift)), nil
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || (shift > 0 && n > (1<<63-1)>>shift) {
		return 0, fmt.Errorf("diskimage: invalid size %q", s)
	}
	return n << shift, nil
}
