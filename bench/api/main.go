// Command api measures the VM lifecycle through the host agent's REST API:
// it starts `govisor-agent serve` (embedded etcd) and, for each of -n VMs,
// creates it, waits for its boot marker on the console, force-stops it and
// deletes it; first one VM at a time, then -parallel at a time. It prints
// VMs per second and p50/p99 latency per operation. Then it does the same
// through libvirt (virsh with QEMU) when libvirt can run here, or says why
// not.
//
// The guest is the tiny PVH marker guest (it prints a marker on COM1 and
// halts): booting the Linux test guest 50 times takes hours on kvm_pvm,
// where guest-kernel code is emulated, so this measures the management
// path, not a guest kernel.
//
// Usage: go run ./bench/api [-n 50] [-parallel 8] [-govisor .cache/bin/govisor] [-libvirt=false]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

const marker = "BENCH-API-UP"

// ops are the timed steps of one VM's life, in order: create is the API
// call (libvirt: define + start), boot from its answer to the marker on the
// console, up the two together (request to running guest), stop a forced
// stop, delete removing the definition.
var ops = []string{"create", "boot", "up", "stop", "delete", "total"}

// run is one batch's measurements: per-op latencies and the wall time.
type run struct {
	lat    map[string][]time.Duration
	wall   time.Duration
	n, bad int
	errs   []string
}

func newRun() *run { return &run{lat: map[string][]time.Duration{}} }

// lifecycle is one VM's create, boot, stop and delete, returning per-op times.
type lifecycle func(ctx context.Context, name string) (map[string]time.Duration, error)

// batch runs n lifecycles, par at a time.
func batch(n, par int, prefix string, life lifecycle) *run {
	r := newRun()
	r.n = n
	var mu sync.Mutex
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			d, err := life(ctx, fmt.Sprintf("%s-%03d", prefix, i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.bad++
				if len(r.errs) < 3 {
					r.errs = append(r.errs, err.Error())
				}
				return
			}
			d["up"] = d["create"] + d["boot"]
			for k, v := range d {
				r.lat[k] = append(r.lat[k], v)
			}
		}(i)
	}
	wg.Wait()
	r.wall = time.Since(t0)
	return r
}

func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return math.NaN()
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return float64(s[max(i, 0)].Microseconds()) / 1000
}

func (r *run) vmsPerSec() float64 { return float64(r.n-r.bad) / r.wall.Seconds() }

// table prints the runs side by side: one column pair (p50, p99) per run.
func table(title string, names []string, runs []*run) {
	fmt.Printf("\n%s\n%-10s", title, "")
	for _, n := range names {
		fmt.Printf(" %23s", n)
	}
	fmt.Printf("\n%-10s", "")
	for range names {
		fmt.Printf(" %11s %11s", "p50 ms", "p99 ms")
	}
	fmt.Println()
	for _, op := range ops {
		fmt.Printf("%-10s", op)
		for _, r := range runs {
			fmt.Printf(" %11.1f %11.1f", pct(r.lat[op], 50), pct(r.lat[op], 99))
		}
		fmt.Println()
	}
	fmt.Printf("%-10s", "VMs/s")
	for _, r := range runs {
		fmt.Printf(" %23.2f", r.vmsPerSec())
	}
	fmt.Printf("\n%-10s", "failed")
	for _, r := range runs {
		fmt.Printf(" %23d", r.bad)
	}
	fmt.Println()
	for i, r := range runs {
		for _, e := range r.errs {
			fmt.Printf("  %s: %s\n", names[i], e)
		}
	}
}

// idleGuest prints the marker and halts forever.
func idleGuest() []byte {
	var a kvmtest.Asm
	a.Print(marker + "\n")
	l := a.Len()
	a.Hlt().JmpBack(l)
	return a.B
}

func die(err error) {
	fmt.Fprintln(os.Stderr, "bench/api:", err)
	os.Exit(1)
}

func main() {
	n := flag.Int("n", 50, "VMs per batch")
	par := flag.Int("parallel", 8, "VMs at a time in the parallel batch")
	govisor := flag.String("govisor", ".cache/bin/govisor", "govisor binary (govisor-agent must be beside it)")
	useLibvirt := flag.Bool("libvirt", true, "also measure libvirt (virsh + QEMU) if it can run here")
	flag.Parse()

	flavor := kvm.DetectFlavor()
	fmt.Printf("KVM: %s; %d VMs per batch; tiny PVH guest (marker, then hlt), 1 vCPU, 64 MiB\n", flavor, *n)
	dir, err := os.MkdirTemp("", "bench-api")
	if err != nil {
		die(err)
	}
	defer os.RemoveAll(dir)
	elf := filepath.Join(dir, "tiny.elf")
	if err := os.WriteFile(elf, kvmtest.PVHELF(idleGuest(), 0x100000), 0o644); err != nil {
		die(err)
	}

	ag, err := startAgent(*govisor, dir)
	if err != nil {
		die(err)
	}
	life := govisorLife(ag.cli, elf)
	serial := batch(*n, 1, "s", life)
	parallel := batch(*n, *par, "p", life)
	ag.stop()
	names := []string{"serial", fmt.Sprintf("%d at a time", *par)}
	table("govisor (agent REST API over its Unix socket)", names, []*run{serial, parallel})

	if !*useLibvirt {
		return
	}
	lv, why := newLibvirt(dir, elf)
	if lv == nil {
		fmt.Printf("\nlibvirt: not measured: %s\n", why)
		return
	}
	defer lv.close()
	lserial := batch(*n, 1, "s", lv.life)
	lparallel := batch(*n, *par, "p", lv.life)
	table("libvirt (virsh, QEMU "+lv.machine+"; one virsh process per call, as a script would)", names, []*run{lserial, lparallel})
	fmt.Printf("\nratio libvirt/govisor (higher: govisor faster)\n%-10s %23s %23s\n", "", names[0], names[1])
	for _, op := range ops {
		if op == "create" || op == "boot" {
			continue // virsh start returns once the vCPU runs: compare "up"
		}
		fmt.Printf("%-10s %22.2fx %22.2fx\n", op+" p50", pct(lserial.lat[op], 50)/pct(serial.lat[op], 50), pct(lparallel.lat[op], 50)/pct(parallel.lat[op], 50))
	}
	fmt.Printf("%-10s %22.2fx %22.2fx\n", "VMs/s", serial.vmsPerSec()/lserial.vmsPerSec(), parallel.vmsPerSec()/lparallel.vmsPerSec())
}

// agent is a govisor-agent child with embedded etcd in a scratch directory.
type agent struct {
	cmd *exec.Cmd
	cli *client.Client
}

func startAgent(govisor, dir string) (*agent, error) {
	bin := filepath.Join(filepath.Dir(govisor), "govisor-agent")
	sock := filepath.Join(dir, "agent.sock")
	state := filepath.Join(dir, "state")
	cmd := exec.Command(bin, "serve", "--state-dir", state, "--socket", sock, "--host-name", "bench", "--log-level", "warn", "--stop-timeout", "5s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w (run `make build`)", bin, err)
	}
	cli, err := client.New(client.Options{Socket: sock})
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := cli.Host(context.Background()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return nil, fmt.Errorf("agent did not answer on %s in 60 s: %s", sock, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &agent{cmd: cmd, cli: cli}, nil
}

func (a *agent) stop() {
	a.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		a.cmd.Process.Kill()
		<-done
	}
}

// govisorLife is one VM's lifecycle through the agent's API.
func govisorLife(c *client.Client, elf string) lifecycle {
	return func(ctx context.Context, name string) (map[string]time.Duration, error) {
		d := map[string]time.Duration{}
		t0 := time.Now()
		spec := api.VMSpec{Name: name, CPUs: 1, Memory: "64M", Kernel: elf, Boot: api.BootPVH, RestartPolicy: api.RestartNever}
		if _, err := c.CreateVM(ctx, spec, true); err != nil {
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
		t1 := time.Now()
		d["create"] = t1.Sub(t0)
		for {
			out, err := c.Console(ctx, name)
			if err == nil && bytes.Contains(out, []byte(marker)) {
				break
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s: no boot marker: %w", name, ctx.Err())
			}
			time.Sleep(2 * time.Millisecond)
		}
		t2 := time.Now()
		d["boot"] = t2.Sub(t1)
		v, err := c.Action(ctx, name, "force-stop", time.Minute)
		if err != nil {
			return nil, fmt.Errorf("force-stop %s: %w", name, err)
		}
		for v.Status.State != api.StateStopped && v.Status.State != api.StateFailed {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s did not stop: %s", name, v.Status.State)
			}
			time.Sleep(2 * time.Millisecond)
			if v, err = c.GetVM(ctx, name); err != nil {
				return nil, err
			}
		}
		t3 := time.Now()
		d["stop"] = t3.Sub(t2)
		if err := c.DeleteVM(ctx, name); err != nil {
			return nil, fmt.Errorf("delete %s: %w", name, err)
		}
		t4 := time.Now()
		d["delete"] = t4.Sub(t3)
		d["total"] = t4.Sub(t0)
		return d, nil
	}
}

// firstLine is the first line of s, for short error messages.
func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
