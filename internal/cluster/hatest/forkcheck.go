package hatest

import (
	"fmt"
	"strconv"
	"strings"
)

// checkNoFork checks the disk of TestPartitionCyclesNeverFork, its NUL
// bytes removed: the head (the last sequence number) and then one "SEQ ID"
// line per sector from 1. The sequence must run from 1 to the head without
// a gap, and each boot's records must be one run: a boot whose records
// come back after another boot's means two copies ran at once.
func checkNoFork(disk string) error {
	lines := strings.Split(strings.TrimSpace(disk), "\n")
	if len(lines) < 2 {
		return fmt.Errorf("the disk holds %d lines: the guest wrote nothing", len(lines))
	}
	head, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil {
		return fmt.Errorf("the disk's head %q: %v", lines[0], err)
	}
	seen := map[string]bool{}
	prev := ""
	var boots []string
	for i, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 2 || f[0] != strconv.Itoa(i+1) {
			return fmt.Errorf("sector %d holds %q, want \"%d ID\" (a gap or a torn write)", i+1, l, i+1)
		}
		id := f[1]
		if id != prev {
			if seen[id] {
				return fmt.Errorf("boot %s wrote again at %d after boots %v: two copies of the VM ran at once", id, i+1, boots)
			}
			seen[id] = true
			boots = append(boots, id)
			prev = id
		}
	}
	if n := len(lines) - 1; n != head && n != head+1 {
		// The last record may be one ahead of the head: the guest stopped
		// between its two writes.
		return fmt.Errorf("the head says %d records, the disk holds %d", head, n)
	}
	return nil
}
