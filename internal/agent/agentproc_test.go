package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/node"
)

// agentProcEnv carries an agentProcConfig to a test binary that is to run
// as an agent process.
const agentProcEnv = "GOVISOR_TEST_AGENT_PROC"

// agentProcConfig is what an agent process is started with.
type agentProcConfig struct {
	StateDir, Socket, HostName, Executable string
	EtcdEndpoints                          []string
}

// TestMain runs the test binary as a host agent when a test started it as
// a process of its own (startAgentProc), so that the test can kill the
// agent by its PID as a crash would; otherwise it runs the tests.
func TestMain(m *testing.M) {
	if c := os.Getenv(agentProcEnv); c != "" {
		os.Exit(runAgentProc(c))
	}
	os.Exit(m.Run())
}

// runAgentProc runs an agent until the process is killed.
func runAgentProc(js string) int {
	var c agentProcConfig
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		fmt.Fprintln(os.Stderr, "agent process:", err)
		return 2
	}
	_, err := New(context.Background(), Config{StateDir: c.StateDir, Socket: c.Socket, HostName: c.HostName, Executable: c.Executable,
		EtcdEndpoints: c.EtcdEndpoints, StopTimeout: 5 * time.Second, ResyncEvery: 250 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent process:", err)
		return 1
	}
	select {}
}

// agentProc is an agent running in a process of its own.
type agentProc struct {
	cfg    agentProcConfig
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has ended
	cli    *client.Client
	id     string // its agent id: the marker of its VMMs
}

// startAgentProc runs an agent process for host on state directory dir
// and the etcd at endpoints, and waits for its API. Whatever happens, the
// process and its VMMs do not outlive the test.
func startAgentProc(t *testing.T, dir, host string, endpoints []string) *agentProc {
	t.Helper()
	ap := &agentProc{cfg: agentProcConfig{StateDir: dir, Socket: filepath.Join(dir, "api.sock"), HostName: host,
		Executable: govisorBin(t), EtcdEndpoints: endpoints}}
	ap.start(t)
	t.Cleanup(func() {
		ap.kill(t)
		for _, pids := range node.FindVMMs(ap.id) {
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return ap
}

// start starts the agent process (again) and waits for its API.
func (ap *agentProc) start(t *testing.T) {
	t.Helper()
	js, err := json.Marshal(ap.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(ap.cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(ap.cfg.StateDir, "agent.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), agentProcEnv+"="+string(js))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	ap.cmd, ap.exited = cmd, exited
	if ap.cli, err = client.New(client.Options{Socket: ap.cfg.Socket}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		h, err := ap.cli.Host(context.Background())
		if err == nil && h.Name == ap.cfg.HostName {
			ap.id = h.AgentID
			break
		}
		select {
		case <-exited:
			t.Fatalf("agent process of %s exited: %s", ap.cfg.HostName, ap.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent process of %s does not answer: %v\n%s", ap.cfg.HostName, err, ap.log())
		}
	}
	t.Logf("agent of %s runs as pid %d", ap.cfg.HostName, cmd.Process.Pid)
}

// kill ends the agent process with SIGKILL (its VMMs stay, as after a
// crash) and waits until it is gone.
func (ap *agentProc) kill(t *testing.T) {
	if ap.cmd == nil || ap.cmd.Process == nil {
		return
	}
	ap.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-ap.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("agent process %d did not end after SIGKILL", ap.cmd.Process.Pid)
	}
	ap.cmd = nil
}

// log is the tail of the agent process's log.
func (ap *agentProc) log() string {
	b, _ := os.ReadFile(filepath.Join(ap.cfg.StateDir, "agent.log"))
	if len(b) > 8192 {
		b = b[len(b)-8192:]
	}
	return strings.TrimSpace(string(b))
}
