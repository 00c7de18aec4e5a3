// Command migrate live-migrates the same tiny guest with govisor and with
// QEMU on loopback, side by side, and prints total time, downtime and bytes
// sent with govisor/QEMU ratios. The guest is a PVH ELF both load: idle
// (halted), busy (a loop reading the TSC) or dirtying a buffer in that loop.
// Downtime is measured twice: as each VMM reports it (pause to resume), and
// from inside the guest as the longest gap between two TSC reads that the
// destination's guest prints on its serial console.
//
// Usage: go run ./bench/migrate [-runs 5] [-memory-mib 1024] [-dirty-mib 64] [-max-downtime-ms 50] [-gap-us 200]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmmapi"
)

type result struct{ totalMS, downtimeMS, mib, guestGapMS float64 }

// gapWatcher collects the TSC gaps a bench guest prints on its console.
type gapWatcher struct {
	done chan struct{}
	max  uint64
}

// watchGaps reads "G<hex cycles>" lines from r until it ends.
func watchGaps(r io.Reader) *gapWatcher {
	w := &gapWatcher{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if !strings.HasPrefix(line, "G") {
				continue
			}
			if v, err := strconv.ParseUint(line[1:], 16, 32); err == nil && v > w.max {
				w.max = v
			}
		}
	}()
	return w
}

// ms waits for the console to end and returns the longest gap in ms.
func (w *gapWatcher) ms(khz uint32) float64 {
	<-w.done
	return float64(w.max) / float64(khz)
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitSock(path string) {
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runGovisor(bin, elf, dir string, memMiB, downtimeMS int, khz uint32) (result, error) {
	addr := freePort()
	srcSock, dstSock := filepath.Join(dir, "g-src.sock"), filepath.Join(dir, "g-dst.sock")
	mem := strconv.Itoa(memMiB) + "M"
	src := exec.Command(bin, "run", "--kernel", elf, "--boot", "pvh", "--memory", mem, "--api-sock", srcSock)
	dst := exec.Command(bin, "run", "--incoming", addr, "--memory", mem, "--cpus", "1", "--api-sock", dstSock)
	out, err := dst.StdoutPipe()
	if err != nil {
		return result{}, err
	}
	gaps := watchGaps(out)
	for _, c := range []*exec.Cmd{src, dst} {
		if err := c.Start(); err != nil {
			return result{}, err
		}
		defer func(c *exec.Cmd) { c.Process.Kill(); c.Wait() }(c)
	}
	waitSock(srcSock)
	waitSock(dstSock)
	time.Sleep(300 * time.Millisecond) // let the guest dirty memory
	var res vmmapi.MigrateResult
	for i := 0; i < 50; i++ {
		if res, err = vmmapi.NewClient(srcSock).Migrate(context.Background(), vmmapi.MigrateRequest{To: addr, MaxDowntimeMS: downtimeMS}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return result{}, err
	}
	time.Sleep(300 * time.Millisecond) // let the destination's guest report its gap
	vmmapi.NewClient(dstSock).Stop(context.Background())
	dst.Wait()
	return result{res.TotalMS, res.DowntimeMS, float64(res.BytesSent) / (1 << 20), gaps.ms(khz)}, nil
}

// qmp is a minimal QEMU Machine Protocol client.
type qmp struct {
	c net.Conn
	r *bufio.Reader
}

func dialQMP(path string) (*qmp, error) {
	var c net.Conn
	var err error
	for i := 0; i < 300; i++ {
		if c, err = net.Dial("unix", path); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	q := &qmp{c: c, r: bufio.NewReader(c)}
	q.r.ReadBytes('\n') // greeting
	_, err = q.do("qmp_capabilities", nil)
	return q, err
}

func (q *qmp) do(cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	q.c.Write(append(b, '\n'))
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Desc string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if json.Unmarshal(line, &resp) != nil || resp.Event != "" {
			continue
		}
		if resp.Error != nil {
			return nil, fmt.Errorf("qmp %s: %s", cmd, resp.Error.Desc)
		}
		return resp.Return, nil
	}
}

func runQEMU(qemu, elf, dir string, memMiB, downtimeMS int, khz uint32) (result, error) {
	addr := freePort()
	srcQ, dstQ := filepath.Join(dir, "q-src.qmp"), filepath.Join(dir, "q-dst.qmp")
	base := []string{"-enable-kvm", "-M", "microvm", "-cpu", "host,-arch-capabilities", "-m", strconv.Itoa(memMiB),
		"-nodefaults", "-no-user-config", "-display", "none", "-kernel", elf}
	src := exec.Command(qemu, append(base, "-serial", "null", "-qmp", "unix:"+srcQ+",server=on,wait=off")...)
	dst := exec.Command(qemu, append(base, "-serial", "stdio", "-qmp", "unix:"+dstQ+",server=on,wait=off", "-incoming", "tcp:"+addr)...)
	out, err := dst.StdoutPipe()
	if err != nil {
		return result{}, err
	}
	gaps := watchGaps(out)
	for _, c := range []*exec.Cmd{src, dst} {
		if err := c.Start(); err != nil {
			return result{}, err
		}
		defer func(c *exec.Cmd) { c.Process.Kill(); c.Wait() }(c)
	}
	q, err := dialQMP(srcQ)
	if err != nil {
		return result{}, err
	}
	if _, err := dialQMP(dstQ); err != nil {
		return result{}, err
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := q.do("migrate-set-parameters", map[string]any{"downtime-limit": downtimeMS}); err != nil {
		return result{}, err
	}
	if _, err := q.do("migrate", map[string]any{"uri": "tcp:" + addr}); err != nil {
		return result{}, err
	}
	for i := 0; i < 6000; i++ {
		raw, err := q.do("query-migrate", nil)
		if err != nil {
			return result{}, err
		}
		var st struct {
			Status    string  `json:"status"`
			TotalTime float64 `json:"total-time"`
			Downtime  float64 `json:"downtime"`
			RAM       struct {
				Transferred float64 `json:"transferred"`
			} `json:"ram"`
		}
		json.Unmarshal(raw, &st)
		switch st.Status {
		case "completed":
			time.Sleep(300 * time.Millisecond) // let the destination's guest report its gap
			dst.Process.Kill()
			dst.Wait()
			return result{st.TotalTime, st.Downtime, st.RAM.Transferred / (1 << 20), gaps.ms(khz)}, nil
		case "failed", "cancelled":
			return result{}, fmt.Errorf("qemu migration %s", st.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return result{}, fmt.Errorf("qemu migration did not finish in 60 s")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func main() {
	runs := flag.Int("runs", 5, "migrations per VMM and workload")
	memMiB := flag.Int("memory-mib", 1024, "guest RAM")
	dirtyMiB := flag.Int("dirty-mib", 64, "buffer the busy guest dirties")
	downtimeMS := flag.Int("max-downtime-ms", 50, "downtime limit given to both VMMs")
	gapUS := flag.Int("gap-us", 200, "TSC gaps the guest reports (shorter ones count as 0)")
	bin := flag.String("govisor", ".cache/bin/govisor", "govisor binary")
	qemu := flag.String("qemu", "qemu-system-x86_64", "QEMU binary")
	flag.Parse()
	khz, err := tscKHz()
	if err != nil {
		fmt.Fprintln(os.Stderr, "TSC frequency:", err)
		os.Exit(1)
	}
	gap := uint32(uint64(*gapUS) * uint64(khz) / 1000)
	dir, _ := os.MkdirTemp("", "bench-migrate")
	defer os.RemoveAll(dir)
	fmt.Printf("KVM: %s; guest RAM %d MiB; downtime limit %d ms; %d runs each (median); guest TSC %d kHz\n",
		kvm.DetectFlavor(), *memMiB, *downtimeMS, *runs, khz)
	fmt.Printf("%-9s %-22s %12s %12s %7s\n", "workload", "", "govisor", "qemu", "ratio")
	for _, w := range []struct {
		name  string
		dirty int
		gap   uint32
	}{{"idle", 0, 0}, {"busy", 0, gap}, {"dirtying", *dirtyMiB, gap}} {
		elf := filepath.Join(dir, w.name+".elf")
		os.WriteFile(elf, kvmtest.PVHELF(guest32(w.dirty, w.gap), 0x100000), 0o644)
		var g, q [4][]float64
		add := func(to *[4][]float64, r result) {
			to[0], to[1], to[2], to[3] = append(to[0], r.totalMS), append(to[1], r.downtimeMS), append(to[2], r.guestGapMS), append(to[3], r.mib)
		}
		for i := 0; i < *runs; i++ {
			if r, err := runGovisor(*bin, elf, dir, *memMiB, *downtimeMS, khz); err == nil {
				add(&g, r)
			} else {
				fmt.Fprintln(os.Stderr, "govisor:", err)
			}
			if r, err := runQEMU(*qemu, elf, dir, *memMiB, *downtimeMS, khz); err == nil {
				add(&q, r)
			} else {
				fmt.Fprintln(os.Stderr, "qemu:", err)
			}
		}
		for i, m := range []struct{ name, unit string }{{"total time", "ms"}, {"downtime (VMM)", "ms"}, {"downtime (guest TSC)", "ms"}, {"sent", "MiB"}} {
			if i == 2 && w.gap == 0 {
				continue // the idle guest halts: nothing measures inside it
			}
			gv, qv := median(g[i]), median(q[i])
			ratio := "n/a"
			if qv > 0 {
				ratio = fmt.Sprintf("%.2fx", gv/qv)
			}
			fmt.Printf("%-9s %-22s %9.1f %s %9.1f %s %7s\n", w.name, m.name, gv, m.unit, qv, m.unit, ratio)
		}
	}
}
