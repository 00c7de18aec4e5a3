package usage

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrProcFormat is returned when a /proc file does not have the expected form.
var ErrProcFormat = errors.New("usage: unexpected /proc format")

// userHZ is the unit of CPU times in /proc/<pid>/stat and /proc/stat:
// USER_HZ, fixed at 100 for user space on every architecture govisor runs
// on (proc(5)).
const userHZ = 100

// ProcFS reads process and host figures from a procfs mount.
type ProcFS struct {
	Root     string // usually "/proc"
	PageSize uint64 // for /proc/<pid>/statm; 0: os.Getpagesize
}

func (p ProcFS) read(parts ...string) ([]byte, error) {
	path := filepath.Join(append([]string{p.Root}, parts...)...)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	return b, nil
}

// Process returns pid's CPU time (user plus system) and resident memory.
func (p ProcFS) Process(pid int) (cpuSeconds float64, rssBytes uint64, err error) {
	stat, err := p.read(strconv.Itoa(pid), "stat")
	if err != nil {
		return 0, 0, err
	}
	ticks, err := parsePidStat(stat)
	if err != nil {
		return 0, 0, fmt.Errorf("usage: /proc/%d/stat: %w", pid, err)
	}
	statm, err := p.read(strconv.Itoa(pid), "statm")
	if err != nil {
		return 0, 0, err
	}
	pages, err := parseStatm(statm)
	if err != nil {
		return 0, 0, fmt.Errorf("usage: /proc/%d/statm: %w", pid, err)
	}
	ps := p.PageSize
	if ps == 0 {
		ps = uint64(os.Getpagesize())
	}
	return float64(ticks) / userHZ, pages * ps, nil
}

// HostFigures are the host-wide numbers a host sample holds.
type HostFigures struct {
	CPUs        int     // CPUs counted in /proc/stat
	BusySeconds float64 // CPU time not idle or waiting for I/O, summed over CPUs
	MemTotal    uint64  // bytes
	MemUsed     uint64  // bytes: MemTotal - MemAvailable
}

// Host reads the host's CPU time and memory use.
func (p ProcFS) Host() (HostFigures, error) {
	stat, err := p.read("stat")
	if err != nil {
		return HostFigures{}, err
	}
	var h HostFigures
	if h.CPUs, h.BusySeconds, err = parseHostStat(stat); err != nil {
		return HostFigures{}, fmt.Errorf("usage: /proc/stat: %w", err)
	}
	mi, err := p.read("meminfo")
	if err != nil {
		return HostFigures{}, err
	}
	if h.MemTotal, h.MemUsed, err = parseMeminfo(mi); err != nil {
		return HostFigures{}, fmt.Errorf("usage: /proc/meminfo: %w", err)
	}
	return h, nil
}

// parsePidStat returns utime+stime (fields 14 and 15 of proc(5)'s
// /proc/<pid>/stat) in clock ticks.
func parsePidStat(b []byte) (uint64, error) {
	// The command name (field 2) is in parentheses and may hold anything,
	// spaces and ')' included: the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: no command name", ErrProcFormat)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: %d fields", ErrProcFormat, len(f)+2)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil || ut+st < ut {
		return 0, fmt.Errorf("%w: CPU times %q %q", ErrProcFormat, f[11], f[12])
	}
	return ut + st, nil
}

// parseStatm returns the resident pages (field 2 of /proc/<pid>/statm).
func parseStatm(b []byte) (uint64, error) {
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("%w: %q", ErrProcFormat, b)
	}
	v, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: resident %q", ErrProcFormat, f[1])
	}
	return v, nil
}

// parseHostStat counts the cpuN lines of /proc/stat and sums the busy time
// of the aggregate "cpu" line: every column but idle (4th) and iowait (5th).
// guest and guest_nice (9th, 10th) are already inside user and nice.
func parseHostStat(b []byte) (cpus int, busySeconds float64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	found := false
	var busy uint64
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			cpus++
			continue
		}
		if len(f) < 5 {
			return 0, 0, fmt.Errorf("%w: cpu line has %d columns", ErrProcFormat, len(f)-1)
		}
		for i, col := range f[1:] {
			if i >= 8 { // guest, guest_nice: counted in user, nice
				break
			}
			v, err := strconv.ParseUint(col, 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("%w: cpu column %d %q", ErrProcFormat, i+1, col)
			}
			if i != 3 && i != 4 {
				busy += v
			}
		}
		found = true
	}
	if !found {
		return 0, 0, fmt.Errorf("%w: no cpu line", ErrProcFormat)
	}
	return cpus, float64(busy) / userHZ, nil
}

// parseMeminfo returns MemTotal and MemTotal-MemAvailable in bytes.
func parseMeminfo(b []byte) (total, used uint64, err error) {
	var haveTotal, haveAvail bool
	var avail uint64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "MemTotal" && key != "MemAvailable") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("%w: %s: %q", ErrProcFormat, key, rest)
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil || v > 1<<53 {
			return 0, 0, fmt.Errorf("%w: %s: %q", ErrProcFormat, key, f[0])
		}
		if key == "MemTotal" {
			total, haveTotal = v<<10, true
		} else {
			avail, haveAvail = v<<10, true
		}
	}
	if !haveTotal || !haveAvail {
		return 0, 0, fmt.Errorf("%w: MemTotal or MemAvailable missing", ErrProcFormat)
	}
	if avail > total {
		avail = total
	}
	return total, total - avail, nil
}
