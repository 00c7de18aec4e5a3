package agent

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/agent/httpapi"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/legacy/acpipm"
	"github.com/govisor/govisor/internal/node"
	"github.com/govisor/govisor/internal/vmmapi"
)

// govisorBin is the real govisor binary, built once (or prebuilt, see
// kvmtest.Binary): the agent's VMM children are exactly what users run.
func govisorBin(t *testing.T) string {
	t.Helper()
	return kvmtest.Binary(t, "govisor", "github.com/govisor/govisor/cmd/govisor")
}

// writeGuest writes a PVH test guest and returns its path.
func writeGuest(t *testing.T, dir, name string, code []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, kvmtest.PVHELF(code, 0x100000), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// idleGuest prints marker and then halts forever: a VM that stays up.
func idleGuest(marker string) []byte {
	var a kvmtest.Asm
	a.Print(marker)
	l := a.Len()
	a.Hlt().JmpBack(l)
	return a.B
}

// exitGuest prints marker and ends the VMM with exit status code.
func exitGuest(marker string, code byte) []byte {
	var a kvmtest.Asm
	a.Print(marker).Exit(code)
	return a.B
}

type testAgent struct {
	*Agent
	cli *client.Client
}

// startAgent runs an agent with embedded etcd in stateDir on a socket there.
func startAgent(t testing.TB, stateDir string, mod func(*Config)) testAgent {
	t.Helper()
	cfg := Config{
		StateDir: stateDir, Socket: filepath.Join(stateDir, "api.sock"), HostName: "testhost",
		StopTimeout: 5 * time.Second, ResyncEvery: 250 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Whatever happens in the test, no VMM of this state directory outlives it.
	t.Cleanup(func() {
		for _, pids := range node.FindVMMs(a.id) {
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	c, err := client.New(client.Options{Socket: cfg.Socket})
	if err != nil {
		t.Fatal(err)
	}
	return testAgent{a, c}
}

func spec(name, kernel, policy string) api.VMSpec {
	return api.VMSpec{Name: name, CPUs: 1, Memory: "64M", Kernel: kernel, Boot: api.BootPVH, DebugExit: true, RestartPolicy: policy}
}

// waitVM polls the VM until ok accepts it.
func waitVM(t *testing.T, c *client.Client, name, what string, ok func(api.VM) bool) api.VM {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, err := c.GetVM(context.Background(), name)
		if err == nil && ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("VM %s never became %s: %+v, %v", name, what, v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool {
	_, err := node.StartTicks(pid)
	return err == nil
}

// powerButtonGuest prints marker, then polls the ACPI PM1 status register
// until the power button is pressed and enters S5 (powers off): a guest
// that honours a graceful shutdown request (ACPI 6.5 sections 4.8.3.1 and
// 16.1.6).
func powerButtonGuest(marker string) []byte {
	var a kvmtest.Asm
	a.Print(marker)
	loop := a.Len()
	a.MovDX(acpipm.EvtBase)
	a.B = append(a.B, 0x66, 0xED)             // in ax, dx
	a.B = append(a.B, 0x66, 0xA9, 0x00, 0x01) // test ax, PWRBTN_STS
	a.B = append(a.B, 0x75, 0x02)             // jnz +2 (past the jump back)
	a.JmpBack(loop)
	a.MovDX(acpipm.CntBase)
	v := uint16(acpipm.SleepTypeS5<<10 | 1<<13)        // SLP_TYP = S5, SLP_EN
	a.B = append(a.B, 0x66, 0xB8, byte(v), byte(v>>8)) // mov ax, v
	a.B = append(a.B, 0x66, 0xEF)                      // out dx, ax
	a.Hlt()
	return a.B
}

// echoGuest prints marker, then polls the COM1 line status register and
// sends every received byte back (an interactive serial console to test).
func echoGuest(marker string) []byte {
	var a kvmtest.Asm
	a.Print(marker)
	loop := waitSerialInput(&a)
	a.MovDX(0x3F8).InAL().OutAL()
	a.JmpBack(loop)
	return a.B
}

// waitSerialInput polls the COM1 line status register until a received
// byte is ready; it returns the loop's offset.
func waitSerialInput(a *kvmtest.Asm) int {
	loop := a.Len()
	a.MovDX(0x3FD).InAL()
	a.B = append(a.B, 0xA8, 0x01) // test al, LSR data ready
	a.B = append(a.B, 0x74, byte(int8(loop-(a.Len()+2))))
	return loop
}

// vmm returns a client of the API of the VMM of VM name.
func (a *Agent) vmm(name string) *vmmapi.Client {
	return vmmapi.NewClient(filepath.Join(a.vmDir(name), node.APISock))
}

// waitVMMAPI waits until the VMM of VM name on ta answers its API.
func waitVMMAPI(t *testing.T, ta testAgent, name string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := ta.vmm(name).Info(t.Context()); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
}

// twoHosts starts agents for hosts testhost and hostb (state dirs dirA
// and dirB, one etcd), shut down when the test ends.
func twoHosts(t *testing.T, dirA, dirB string) (ta, tb testAgent) {
	t.Helper()
	bin := govisorBin(t)
	ta = startAgent(t, dirA, func(c *Config) { c.Executable = bin })
	t.Cleanup(func() { ta.Shutdown(context.Background()) })
	tb = startAgent(t, dirB, func(c *Config) { c.Executable = bin; c.HostName = "hostb"; c.EtcdEndpoints = ta.st.Endpoints() })
	t.Cleanup(func() { tb.Shutdown(context.Background()) })
	return ta, tb
}

// threeHosts starts the agents of twoHosts and "broken", whose VMMs exit
// at once.
func threeHosts(t *testing.T, dirA, dirB, dirC string) (ta, tb, tc testAgent) {
	t.Helper()
	ta, tb = twoHosts(t, dirA, dirB)
	tc = startAgent(t, dirC, func(c *Config) {
		c.Executable = "/bin/false"
		c.HostName = "broken"
		c.EtcdEndpoints = ta.st.Endpoints()
	})
	t.Cleanup(func() { tc.Shutdown(context.Background()) })
	return ta, tb, tc
}

// runIdle defines VM name on ta, an idle guest (written into dir) with
// restart policy policy that stops at once (no stop grace), starts it and
// waits until it runs and its VMM answers.
func runIdle(t *testing.T, ta testAgent, dir, name, policy string) api.VM {
	t.Helper()
	s := spec(name, writeGuest(t, dir, "idle.elf", idleGuest("UP\n")), policy)
	s.StopTimeout = "0s"
	if _, err := ta.cli.CreateVM(t.Context(), s, true); err != nil {
		t.Fatal(err)
	}
	v := waitVM(t, ta.cli, name, "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	waitVMMAPI(t, ta, name)
	return v
}

// decodeObject is the API's body decoder, which the fuzz tests feed.
var decodeObject = httpapi.DecodeObject
