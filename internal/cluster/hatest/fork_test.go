package hatest

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/lab"
)

// forkGuest is the guest of TestPartitionCyclesNeverFork: each boot picks
// a random id, reads the last sequence number from sector 0 of its disk
// and goes on from there, writing "SEQ ID" to sector SEQ and then SEQ to
// sector 0, each flushed to the disk before the next. Two copies running
// at once would interleave their ids in the sectors.
const forkGuest = `b=$RANDOM$RANDOM; n=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | tr -dc 0-9); n=${n:-0}; ` +
	`while :; do n=$((n+1)); echo $n $b | dd of=/dev/vda bs=512 seek=$n conv=sync,fsync 2>/dev/null; ` +
	`echo $n | dd of=/dev/vda bs=512 conv=sync,fsync 2>/dev/null; echo HA-ALIVE $n; usleep 200000; done`

// partitionCycles is how many partition/heal cycles the test runs (the
// issue's 20; GOVISOR_PARTITION_CYCLES overrides it for a quick look).
func partitionCycles() int {
	if n, err := strconv.Atoi(os.Getenv("GOVISOR_PARTITION_CYCLES")); err == nil && n > 0 {
		return n
	}
	return 20
}

// TestPartitionCyclesNeverFork: an HA VM whose guest appends a sequence to
// its disk on the shared pool survives 20 cycles of its host being cut
// off the network and healed: each time its VMM fences itself (its log
// says so and its API is gone once healed), the VM runs again on another
// host and stays there (the healed host takes nothing back), and at no
// time do two copies run: the sequence on the disk never forks (no boot's
// records after a later boot's), and it has no gaps.
func TestPartitionCyclesNeverFork(t *testing.T) {
	c := &cluster{t: t, st: sharedLab.Take(t)}
	const name = "fork"
	c.removeVMs(name)
	disk := lab.SharedPath + "/" + name + ".raw"
	c.mustGV("lab1", "volume", "create", lab.SharedPool+"/"+name+".raw", "--size", "16M", "--format", "raw")
	c.put("lab1", "/tmp/fork.yaml", fmt.Sprintf(`name: %s
cpus: 1
memory: 128M
kernel: /guest/bzImage
initrd: /guest/initrd.cpio
cmdline: 'console=ttyS0 quiet rodata=off run="%s"'
ha: true
restartPriority: high
disks:
  - pool: %s
    volume: %s.raw
`, name, forkGuest, lab.SharedPool, name))
	c.mustGV("lab1", "vm", "create", "-f", "/tmp/fork.yaml")
	c.waitRunning("lab1", name, "lab1", 2*time.Minute)

	cycles := partitionCycles()
	started := time.Now()
	last := "lab1" // where the VM was started or restarted last
	for i := 1; i <= cycles; i++ {
		via := ""
		v, err := c.vm("lab1", name)
		if err != nil {
			v, err = c.vm("lab2", name)
		}
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		from := v.Host
		if from != last || v.Status.Host != last {
			t.Fatalf("cycle %d: %s runs on %s (status: %s), not where it was restarted (%s): a healed host took it back", i, name, from, v.Status.Host, last)
		}
		for _, h := range []string{"lab1", "lab2", "lab3"} {
			if h != from && via == "" {
				via = h
			}
		}
		fencedBefore, downAtCut := c.fencedCount(from, name)
		if downAtCut {
			// Its latest VMM had stopped itself already (a starved lab
			// host): no copy runs there, so no new fence is due.
			fencedBefore = -1
		}
		t0 := time.Now()
		if err := c.st.Partition(from, true); err != nil {
			t.Fatal(err)
		}
		var to string
		tl := &timeline{t: t, t0: t0}
		for deadline := t0.Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
			v, err := c.vm(via, name)
			tl.see(v, err)
			if err == nil && v.Host != from && v.Status.State == api.StateRunning && c.aliveOn(v.Host, name) {
				to = v.Host
				break
			}
			if time.Now().After(deadline) {
				c.st.Partition(from, false)
				t.Fatalf("cycle %d: 2 minutes after %s was cut off, %s: %+v %v", i, from, name, v, err)
			}
		}
		moved := time.Since(t0)
		if err := c.st.Partition(from, false); err != nil {
			t.Fatal(err)
		}
		c.waitReady(via, from, time.Minute)
		t.Logf("cycle %d: %s cut off, %s runs on %s after %.1f s; healed and ready after %.1f s", i, from, name, to, moved.Seconds(), time.Since(t0).Seconds())
		c.checkFenced(from, name, fencedBefore)
		last = to
	}
	t.Logf("%d cycles in %.0f s", cycles, time.Since(started).Seconds())

	v, err := c.vm("lab1", name)
	if err != nil {
		t.Fatal(err)
	}
	c.mustGV(v.Host, "vm", "stop", name)
	out, err := c.run(v.Host, "sh", "-c", "tr -d '\\000' < "+disk)
	if err != nil {
		t.Fatalf("read the guest's disk: %v", err)
	}
	if err := checkNoFork(out); err != nil {
		t.Error(err)
	}
}

// fencedCount counts the ways VM name's VMMs on host stopped themselves,
// in its VMM log: fenced (watchdog or lost disk lease), or refused at
// start by the disk lease another host's copy holds.
// It also reports whether the latest VMM start there has already stopped
// itself.
func (c *cluster) fencedCount(host, name string) (int, bool) {
	log, _ := c.run(host, "cat", "/var/lib/govisor/vms/"+name+"/vmm.log")
	return stoppedItself(log), lastStartStopped(log)
}

// lastStartStopped reports whether the latest VMM start in log stopped
// itself.
func lastStartStopped(log string) bool {
	i := strings.LastIndex(log, "agent starts the VMM")
	return i >= 0 && stoppedItself(log[i:]) > 0
}

func stoppedItself(log string) int {
	return strings.Count(log, "fenced: ") + strings.Count(log, "is in use by VM")
}

// checkFenced checks that the copy of VM name on host, a host that was cut
// off and healed, stopped itself: its VMM's log says it fenced (more
// often than before the cut: a later local
// start may follow it, refused by the disk lease), and its API no longer
// answers.
func (c *cluster) checkFenced(host, name string, before int) {
	c.t.Helper()
	dir := "/var/lib/govisor/vms/" + name
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		log, err := c.run(host, "cat", dir+"/vmm.log")
		if err == nil && stoppedItself(log) > before {
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s's VMM of %s did not fence itself (%v):\n%s", host, name, err, log)
		}
	}
	if out, err := c.gv(host, "ctl", "--api-sock", dir+"/api.sock", "info"); err == nil {
		c.t.Fatalf("%s's VMM of %s still answers after the heal: %s", host, name, out)
	}
}

// waitReady waits until host is a ready host again, as seen from via.
func (c *cluster) waitReady(via, host string, limit time.Duration) {
	c.t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(500 * time.Millisecond) {
		out, err := c.gv(via, "host", "list", "-o", "json")
		var hl api.HostList
		if err == nil {
			err = json.Unmarshal([]byte(out), &hl)
		}
		for _, h := range hl.Items {
			if h.Name == host && h.State == api.HostReady {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s is not ready %v after the heal: %v\n%s", host, limit, err, out)
		}
	}
}
