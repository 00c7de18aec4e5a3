package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
	"github.com/govisor/govisor/internal/vmmapi"
)

// exitInfo is how a VMM process ended.
type exitInfo struct {
	code   *int   // exit status; nil when killed by a signal or unknown (adopted)
	signal string // the signal that killed it, if any
}

func (e exitInfo) String() string {
	switch {
	case e.signal != "":
		return "killed by signal " + e.signal
	case e.code != nil:
		return "exit status " + strconv.Itoa(*e.code)
	}
	return "exit status unknown (adopted process)"
}

// failed reports whether the exit counts as a failure for on-failure restarts.
func (e exitInfo) failed() bool { return e.code == nil || *e.code != 0 }

// proc is one VMM child process, spawned by this agent or adopted from /proc.
type proc struct {
	name     string
	pid      int
	ticks    uint64
	since    time.Time
	restarts int
	cmd      *exec.Cmd // nil when adopted
	pidfd    int       // -1 for spawned children (cmd waits for them)
	done     chan struct{}
	exit     exitInfo       // valid once done is closed
	vmm      *vmmapi.Client // its control API (api.sock in the VM's directory)
	grace    time.Duration  // how long a stop waits for the guest to shut down

	mu sync.Mutex
	st procState // read with state, changed with update

	// mirror lists the disk copies a destination VMM of a live migration
	// receives; they are removed if the VM does not come here (a.mu).
	mirror []string
}

// procState is what the agent asked of a VMM process and what it is doing
// with it; a proc keeps one under its mu.
type procState struct {
	stopReq    bool          // the agent asked it to stop: its exit is not a failure
	restartReq bool          // start it again at once after the exit
	stopping   bool          // the stop sequence runs
	paused     bool          // the agent paused the guest
	migration  chan struct{} // non-nil during a live migration; closed when decided
	migrated   bool          // the guest now runs on another host
}

// state returns a copy of the process's state.
func (p *proc) state() procState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// update changes the process's state with fn, atomically.
func (p *proc) update(fn func(s *procState)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(&p.st)
}

// requestRestart makes the coming exit a restart: a new VMM starts at once.
func (p *proc) requestRestart() { p.update(func(s *procState) { s.restartReq = true }) }

// killAfter is how long the VMM has to exit after SIGTERM before SIGKILL.
const killAfter = 5 * time.Second

// vmmConfigName is the VMM's config file in the VM's folder: the agent
// writes it before every start and the VMM reads it once (govisor run
// --config), so a running VMM never depends on it.
const vmmConfigName = "vmm.json"

// vmmConfig turns a definition into the VMM's config. The sockets are
// relative to the VMM's working directory, the VM's directory: that keeps
// them under the 108-byte limit of a Unix socket path.
func vmmConfig(s api.VMSpec) (vmmconfig.Config, error) {
	var mib uint64
	if s.Memory != "" { // empty is the VMM's default, which is the agent's
		var err error
		if mib, err = api.ParseMemoryMiB(s.Memory); err != nil {
			return vmmconfig.Config{}, fmt.Errorf("agent: memory of %s: %w", s.Name, err)
		}
	}
	c := vmmconfig.Config{APISock: apiSockName, ConsoleSock: consoleSockName,
		Kernel: s.Kernel, Initrd: s.Initrd, Cmdline: s.Cmdline, CPUs: s.CPUs, MemoryMiB: mib, Boot: s.Boot,
		DebugExit: s.DebugExit, RNG: s.RNG, Balloon: s.Balloon, Nets: vmmNets(s)}
	for _, d := range s.Disks {
		c.Disks = append(c.Disks, vmmconfig.Disk{Path: d.Path, ReadOnly: d.ReadOnly, Format: d.Format})
	}
	return c, nil
}

// vmmNets are the VMM's network interfaces for s's NICs.
func vmmNets(s api.VMSpec) []vmmconfig.Net {
	var nets []vmmconfig.Net
	for i, nic := range s.NICs {
		nets = append(nets, vmmconfig.Net{TAP: tapName(s.Name, i), MAC: nic.MAC})
	}
	return nets
}

// restoreConfig is the config of a VMM that resumes a VM from the snapshot
// in snapDir instead of booting it.
func restoreConfig(s api.VMSpec, snapDir string) vmmconfig.Config {
	return vmmconfig.Config{APISock: apiSockName, ConsoleSock: consoleSockName, Restore: snapDir, DebugExit: s.DebugExit}
}

// incomingConfig is the config of a live migration's destination VMM,
// waiting on addr.
func incomingConfig(s api.VMSpec, addr string) (vmmconfig.Config, error) {
	c, err := vmmConfig(s)
	c.Incoming = addr
	return c, err
}

// spawn starts a VMM child with the config c, written into dir: argv[0]
// is the marker, stdin is /dev/null, the console goes to consolePath and
// VMM messages to logPath.
// The child gets its own process group and no parent-death signal, so it
// survives the agent (a restarted agent adopts it).
func spawn(exe, mark, dir string, s api.VMSpec, c vmmconfig.Config, consolePath, logPath string) (*proc, error) {
	con, err := os.OpenFile(consolePath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: console log of %s: %w", s.Name, err)
	}
	defer con.Close()
	lg, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: VMM log of %s: %w", s.Name, err)
	}
	defer lg.Close()
	fmt.Fprintf(lg, "--- %s: agent starts the VMM\n", time.Now().UTC().Format(time.RFC3339))
	if err := vmmconfig.WriteFile(filepath.Join(dir, vmmConfigName), c); err != nil {
		return nil, fmt.Errorf("agent: VMM of %s: %w", s.Name, err)
	}
	// A stale socket of an earlier VMM would make the agent talk to nothing.
	os.Remove(filepath.Join(dir, apiSockName))
	os.Remove(filepath.Join(dir, consoleSockName))
	cmd := exec.Command(exe, "run", "--config", vmmConfigName)
	cmd.Args[0] = mark
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = con, lg
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("agent: start VMM of %s (%s): %w", s.Name, exe, err)
	}
	p := &proc{name: s.Name, pid: cmd.Process.Pid, since: time.Now().UTC(), cmd: cmd, pidfd: -1, done: make(chan struct{}),
		vmm: vmmapi.NewClient(filepath.Join(dir, apiSockName))}
	// A child that already exited has no start time; its Wait reports why.
	p.ticks, _ = procStartTicks(p.pid)
	go func() {
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.exit.signal = fmt.Sprintf("%d (%s)", int(ws.Signal()), ws.Signal())
		} else {
			c := cmd.ProcessState.ExitCode()
			p.exit.code = &c
		}
		close(p.done)
	}()
	return p, nil
}

// adopt takes over a running VMM process found in /proc. Its exit status is
// unknowable (it is not our child); a pidfd says when it exits and names it
// for signals without the risk of pid reuse.
func adopt(ctx context.Context, name, dir string, pid int, ticks uint64, since time.Time) (*proc, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("agent: pidfd of %s (pid %d): %w", name, pid, err)
	}
	// The pid may have been reused between the /proc scan and pidfd_open.
	if t, err := procStartTicks(pid); err != nil || t != ticks {
		unix.Close(fd)
		return nil, fmt.Errorf("agent: process %d of %s is gone", pid, name)
	}
	p := &proc{name: name, pid: pid, ticks: ticks, since: since, pidfd: fd, done: make(chan struct{}),
		vmm: vmmapi.NewClient(filepath.Join(dir, apiSockName))}
	go func() {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for ctx.Err() == nil {
			n, err := unix.Poll(fds, 500)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return
			}
			if n > 0 {
				close(p.done)
				return
			}
		}
	}()
	return p, nil
}

// signal sends sig to the VMM process.
func (p *proc) signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if p.cmd != nil {
		err := p.cmd.Process.Signal(sig)
		if errors.Is(err, os.ErrProcessDone) {
			return nil
		}
		return err
	}
	err := unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
	if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.EBADF) {
		return nil
	}
	return err
}

// stop shuts the VM down gracefully: it presses the guest's ACPI power
// button through the VMM API and gives the guest p.grace to power off, then
// sends the VMM SIGTERM (the VMM stops the guest at once) and SIGKILL
// killAfter later. Without a VMM API (or with no grace) it starts at
// SIGTERM. Only the first call runs the sequence.
func (p *proc) stop() {
	var running, paused bool
	p.update(func(s *procState) {
		s.stopReq = true
		running, paused = s.stopping, s.paused
		s.stopping = true
	})
	if running {
		return
	}
	go func() {
		if p.grace > 0 && p.vmm != nil && p.alive() {
			if paused {
				quickCall(p.vmm.Resume) // a paused guest cannot see the button
			}
			if _, err := quickCall(p.vmm.Shutdown); err == nil {
				select {
				case <-p.done:
					return
				case <-time.After(p.grace):
				}
			}
		}
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(killAfter):
			p.signal(syscall.SIGKILL)
		}
	}()
}

// alive reports whether the process has not exited yet.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill stops the VMM at once (force-stop).
func (p *proc) kill() {
	p.update(func(s *procState) { s.stopReq = true })
	p.signal(syscall.SIGKILL)
}

// lastLine returns the last non-empty line of the file's final 4 KiB: the
// VMM's own message on why it stopped.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-4096, 0)
	buf := make([]byte, fi.Size()-off)
	n, _ := f.ReadAt(buf, off)
	lines := strings.Split(strings.TrimSpace(string(buf[:n])), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if strings.HasPrefix(last, "---") {
		return ""
	}
	return last
}
