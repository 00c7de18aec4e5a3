package lab

import (
	"testing"
	"time"
)

func TestSlotsFor(t *testing.T) {
	for _, c := range []struct {
		hostCPUs, hostMemMB, cpus, memMB, want int
	}{
		{2, 24105, 1, 6144, 2}, // CI: two TCG lab hosts of one vCPU
		{1, 24105, 1, 6144, 1},
		{16, 24105, 1, 6144, 3}, // memory-bound: three of 6 GiB, a GiB left
		{16, 0, 1, 6144, 16},    // memory unknown: CPUs only
		{8, 65536, 2, 6144, 4},  // KVM-accelerated lab hosts have two vCPUs
		{2, 4096, 1, 6144, 1},   // never none
		{1, 4096, 2, 6144, 1},
	} {
		if got := slotsFor(c.hostCPUs, c.hostMemMB, c.cpus, c.memMB); got != c.want {
			t.Errorf("slotsFor(%d CPUs, %d MiB; lab host %d CPUs, %d MiB) = %d, want %d",
				c.hostCPUs, c.hostMemMB, c.cpus, c.memMB, got, c.want)
		}
	}
}

func TestTakeSlot(t *testing.T) {
	dir := t.TempDir()
	u1, err := takeSlot(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	u2, err := takeSlot(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Both slots taken: a third taker waits until one is freed.
	got := make(chan func(), 1)
	go func() {
		u, err := takeSlot(dir, 2)
		if err != nil {
			t.Error(err)
		}
		got <- u
	}()
	select {
	case <-got:
		t.Fatal("a third taker got one of two slots")
	case <-time.After(1500 * time.Millisecond):
	}
	u1()
	var u3 func()
	select {
	case u3 = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the third taker did not get the freed slot")
	}
	t.Setenv("GOVISOR_LAB_SLOTS", "2")
	all := make(chan func(), 1)
	go func() {
		u, err := RunLock(Assets{Dir: dir})
		if err != nil {
			t.Error(err)
		}
		all <- u
	}()
	u2()
	select {
	case <-all:
		t.Fatal("RunLock took every slot while one was still taken")
	case <-time.After(1500 * time.Millisecond):
	}
	u3()
	select {
	case u := <-all:
		u()
	case <-time.After(10 * time.Second):
		t.Fatal("RunLock did not get the freed slots")
	}
}

func TestRunDir(t *testing.T) {
	runs := t.TempDir()
	d1, u1, err := runDir(runs, "._internal_vm")
	if err != nil {
		t.Fatal(err)
	}
	d2, u2, err := runDir(runs, "._internal_vm")
	if err != nil {
		t.Fatal(err)
	}
	if d1 == d2 {
		t.Fatalf("two runs of one package share %s", d1)
	}
	u1()
	d3, u3, err := runDir(runs, "._internal_vm")
	if err != nil {
		t.Fatal(err)
	}
	if d3 != d1 {
		t.Errorf("a freed run folder was not reused: %s, want %s", d3, d1)
	}
	u2()
	u3()
}
