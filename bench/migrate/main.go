// Command migrate live-migrates the same tiny guest with govisor and with
// QEMU on loopback, side by side, and prints total time, downtime and bytes
// sent with govisor/QEMU ratios. The guest is a PVH ELF both load: idle
// (halted) or dirtying a buffer in a loop. Downtime is as each VMM reports
// it (pause to resume on the destination).
//
// Usage: go run ./bench/migrate [-runs 5] [-memory-mib 1024] [-dirty-mib 64] [-max-downtime-ms 50]
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmmapi"
)

// guest32 returns 32-bit protected-mode code (the PVH entry state, paging
// off): idle halts; otherwise it writes one word per 4 KiB page of a
// dirtyMiB buffer at 16 MiB, over and over.
func guest32(dirtyMiB int) []byte {
	le := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	if dirtyMiB == 0 {
		return []byte{0xFA, 0xF4, 0xEB, 0xFD} // cli; hlt; jmp back to hlt
	}
	const buf = 16 << 20
	end := uint32(buf + dirtyMiB<<20)
	var c []byte
	outer := len(c)
	c = append(c, 0xBF) // mov edi, buf
	c = append(c, le(buf)...)
	inner := len(c)
	c = append(c, 0x89, 0x07)                         // mov [edi], eax
	c = append(c, 0x81, 0xC7)                         // add edi, 4096
	c = append(c, le(4096)...)                        //
	c = append(c, 0x81, 0xFF)                         // cmp edi, end
	c = append(c, le(end)...)                         //
	c = append(c, 0x72, byte(int8(inner-(len(c)+2)))) // jb inner
	c = append(c, 0x40)                               // inc eax
	c = append(c, 0xEB, byte(int8(outer-(len(c)+2)))) // jmp outer
	return c
}

type result struct{ totalMS, downtimeMS, mib float64 }

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

func runGovisor(bin, elf, dir string, memMiB, downtimeMS int) (result, error) {
	addr := freePort()
	srcSock, dstSock := filepath.Join(dir, "g-src.sock"), filepath.Join(dir, "g-dst.sock")
	mem := strconv.Itoa(memMiB) + "M"
	src := exec.Command(bin, "run", "--kernel", elf, "--boot", "pvh", "--memory", mem, "--api-sock", srcSock)
	dst := exec.Command(bin, "run", "--incoming", addr, "--memory", mem, "--cpus", "1", "--api-sock", dstSock)
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
	var err error
	for i := 0; i < 50; i++ {
		if res, err = vmmapi.NewClient(srcSock).Migrate(vmmapi.MigrateRequest{To: addr, MaxDowntimeMS: downtimeMS}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return result{}, err
	}
	vmmapi.NewClient(dstSock).Stop()
	return result{res.TotalMS, res.DowntimeMS, float64(res.BytesSent) / (1 << 20)}, nil
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

func runQEMU(qemu, elf, dir string, memMiB, downtimeMS int) (result, error) {
	addr := freePort()
	srcQ, dstQ := filepath.Join(dir, "q-src.qmp"), filepath.Join(dir, "q-dst.qmp")
	base := []string{"-enable-kvm", "-M", "microvm", "-cpu", "host,-arch-capabilities", "-m", strconv.Itoa(memMiB),
		"-nodefaults", "-no-user-config", "-display", "none", "-kernel", elf}
	src := exec.Command(qemu, append(base, "-qmp", "unix:"+srcQ+",server=on,wait=off")...)
	dst := exec.Command(qemu, append(base, "-qmp", "unix:"+dstQ+",server=on,wait=off", "-incoming", "tcp:"+addr)...)
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
			return result{st.TotalTime, st.Downtime, st.RAM.Transferred / (1 << 20)}, nil
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
	bin := flag.String("govisor", ".cache/bin/govisor", "govisor binary")
	qemu := flag.String("qemu", "qemu-system-x86_64", "QEMU binary")
	flag.Parse()
	dir, _ := os.MkdirTemp("", "bench-migrate")
	defer os.RemoveAll(dir)
	fmt.Printf("KVM: %s; guest RAM %d MiB; downtime limit %d ms; %d runs each (median)\n", kvm.DetectFlavor(), *memMiB, *downtimeMS, *runs)
	fmt.Printf("%-9s %-16s %12s %12s %7s\n", "workload", "", "govisor", "qemu", "ratio")
	for _, w := range []struct {
		name  string
		dirty int
	}{{"idle", 0}, {"dirtying", *dirtyMiB}} {
		elf := filepath.Join(dir, w.name+".elf")
		os.WriteFile(elf, kvmtest.PVHELF(guest32(w.dirty), 0x100000), 0o644)
		var g, q [3][]float64
		for i := 0; i < *runs; i++ {
			if r, err := runGovisor(*bin, elf, dir, *memMiB, *downtimeMS); err == nil {
				g[0], g[1], g[2] = append(g[0], r.totalMS), append(g[1], r.downtimeMS), append(g[2], r.mib)
			} else {
				fmt.Fprintln(os.Stderr, "govisor:", err)
			}
			if r, err := runQEMU(*qemu, elf, dir, *memMiB, *downtimeMS); err == nil {
				q[0], q[1], q[2] = append(q[0], r.totalMS), append(q[1], r.downtimeMS), append(q[2], r.mib)
			} else {
				fmt.Fprintln(os.Stderr, "qemu:", err)
			}
		}
		for i, m := range []struct{ name, unit string }{{"total time", "ms"}, {"downtime", "ms"}, {"sent", "MiB"}} {
			gv, qv := median(g[i]), median(q[i])
			ratio := "n/a"
			if qv > 0 {
				ratio = fmt.Sprintf("%.2fx", gv/qv)
			}
			fmt.Printf("%-9s %-16s %9.1f %s %9.1f %s %7s\n", w.name, m.name, gv, m.unit, qv, m.unit, ratio)
		}
	}
}
