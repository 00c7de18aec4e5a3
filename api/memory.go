package api

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseMemoryMiB parses a VM memory size as VMSpec.Memory and `govisor run
// --memory` take it: 512M, 2G, 1T (K/M/G/T, optional "iB"/"B"); a plain
// number is MiB.
func ParseMemoryMiB(s string) (uint64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "IB"), "B")
	mult := uint64(1)
	switch {
	case strings.HasSuffix(t, "M"):
		t = t[:len(t)-1]
	case strings.HasSuffix(t, "G"):
		t, mult = t[:len(t)-1], 1024
	case strings.HasSuffix(t, "T"):
		t, mult = t[:len(t)-1], 1024*1024
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || n == 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q: give a size such as 512M or 2G", s)
	}
	return n * mult, nil
}
