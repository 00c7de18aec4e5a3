package hatest

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A lab host's CLOCK_BOOTTIME (/proc/uptime) read through shell builtins
// only: on a one-vCPU TCG lab host every fork costs milliseconds that the
// VMM being timed would otherwise get.
const readUptime = `read u _ < /proc/uptime; echo "$u $(date +%s)"`

// parseUptime reads /proc/uptime's first field (seconds, 10 ms steps).
func parseUptime(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("not an uptime: %q", s)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// hostClock maps a lab host's uptime to this machine's clock: at local
// time At the host's uptime was Up, give or take Err (half the round trip
// of the best of a few reads).
type hostClock struct {
	At   time.Time
	Up   time.Duration
	Err  time.Duration
	Unix int64 // the host's wall clock then (seconds), to place its logs
}

// local is the time on this machine when host's uptime was up.
func (hc hostClock) local(up time.Duration) time.Time { return hc.At.Add(up - hc.Up) }

// clock measures host's clock against this machine's.
func (c *cluster) clock(host string) (hostClock, error) {
	var best hostClock
	for i := range 3 {
		t1 := time.Now()
		out, err := c.run(host, "sh", "-c", readUptime)
		rtt := time.Since(t1)
		if err != nil {
			return hostClock{}, err
		}
		f := strings.Fields(out)
		if len(f) != 2 {
			return hostClock{}, fmt.Errorf("%s: uptime and date: %q", host, out)
		}
		up, err := parseUptime(f[0])
		if err != nil {
			return hostClock{}, fmt.Errorf("%s: %w", host, err)
		}
		unix, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return hostClock{}, fmt.Errorf("%s: date: %q", host, f[1])
		}
		if i == 0 || rtt/2 < best.Err {
			best = hostClock{At: t1.Add(rtt / 2), Up: up, Err: rtt / 2, Unix: unix}
		}
	}
	return best, nil
}

// waitLine starts, on host, a watch for the literal text in file (which
// may not exist yet) and delivers the host's uptime when it appeared, polled every 100 ms
// with shell builtins (the reader keeps its place in the file, and a line
// read while half written is joined with its rest), or an error
// after limit.
func (c *cluster) waitLine(host, file, text string, limit time.Duration) <-chan watchResult {
	ch := make(chan watchResult, 1)
	script := waitLineScript(limit)
	go func() {
		out, err := c.run(host, "sh", "-c", script, "sh", file, text)
		if err != nil {
			ch <- watchResult{err: fmt.Errorf("%q in %s on %s: %w (%s)", text, file, host, err, out)}
			return
		}
		up, err := parseUptime(out)
		ch <- watchResult{up: up, err: err}
	}()
	return ch
}

// waitLineScript is waitLine's shell script: sh -c SCRIPT sh FILE TEXT.
func waitLineScript(limit time.Duration) string {
	return fmt.Sprintf(`f=$1; n=%d
until [ -e "$f" ]; do n=$((n-1)); [ $n -gt 0 ] || exit 3; sleep 0.1; done
acc=
while :; do
  IFS= read -r line; rc=$?; acc=$acc$line
  case $acc in *"$2"*) read u _ < /proc/uptime; echo "$u"; exit 0;; esac
  if [ $rc -eq 0 ]; then acc=; else n=$((n-1)); [ $n -gt 0 ] || exit 3; sleep 0.1; fi
done < "$f"`, int(limit/(100*time.Millisecond)))
}

// watchResult is what waitLine saw: the host's uptime, or why not.
type watchResult struct {
	up  time.Duration
	err error
}
