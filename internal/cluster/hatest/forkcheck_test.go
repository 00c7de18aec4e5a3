package hatest

import (
	"strings"
	"testing"
)

// TestCheckNoFork: the fork check accepts one copy at a time and catches
// interleaved boots, gaps and a wrong head.
func TestCheckNoFork(t *testing.T) {
	for _, tc := range []struct {
		name, disk, err string
	}{
		{"one boot", "3\n1 a\n2 a\n3 a\n", ""},
		{"failovers", "5\n1 a\n2 a\n3 b\n4 b\n5 c\n", ""},
		{"stopped between writes", "2\n1 a\n2 a\n3 a\n", ""},
		{"fork", "4\n1 a\n2 b\n3 a\n4 b\n", "two copies"},
		{"gap", "3\n1 a\n3 a\n", "gap"},
		{"head behind", "1\n1 a\n2 a\n3 a\n", "head says"},
		{"empty", "", "wrote nothing"},
	} {
		err := checkNoFork(tc.disk)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
	}
}

func TestLastStartStopped(t *testing.T) {
	for _, tc := range []struct {
		log  string
		want bool
	}{
		{"", false},
		{"--- T: agent starts the VMM\ngovisor: fenced: x\n--- T: agent starts the VMM\n", false},
		{"--- T: agent starts the VMM\ngovisor: fenced: x\n", true},
		{"--- T: agent starts the VMM\nfoo is in use by VM bar\n", true},
	} {
		if got := lastStartStopped(tc.log); got != tc.want {
			t.Errorf("lastStartStopped(%q) = %v", tc.log, got)
		}
	}
}
