// Package hostmem reads how much RAM the host has. It is a leaf that both
// the VMM (internal/vm) and the host agent use, so that the agent need not
// link the VMM for one figure.
package hostmem

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
)

// TotalMiB is the host's total RAM (MemTotal of /proc/meminfo), 0 if unknown.
func TotalMiB() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	return memTotalMiB(f)
}

// memTotalMiB finds MemTotal in a /proc/meminfo listing; 0 if it is not there.
func memTotalMiB(r io.Reader) uint64 {
	s := bufio.NewScanner(r)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseUint(fields[1], 10, 64)
			return kb >> 10
		}
	}
	return 0
}
