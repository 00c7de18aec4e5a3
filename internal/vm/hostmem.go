package vm

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// HostMemoryMiB is the host's total RAM (MemTotal), 0 if unknown.
func HostMemoryMiB() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseUint(fields[1], 10, 64)
			return kb >> 10
		}
	}
	return 0
}
