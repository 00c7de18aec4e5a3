package node

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
	"github.com/govisor/govisor/internal/jail"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
	"github.com/govisor/govisor/internal/vmmapi"
)

// ExitInfo is how a VMM process ended.
type ExitInfo struct {
	Code   *int   // exit status; nil when killed by a signal or unknown (adopted)
	Signal string // the signal that killed it, if any
	// Seccomp is the forbidden syscall that ended it, if its seccomp
	// filter did (package seccomp: the VMM then exits 2 after the Go
	// runtime's SIGSYS report).
	Seccomp string
}

func (e ExitInfo) String() string {
	switch {
	case e.Seccomp != "":
		return "killed by its seccomp filter (SIGSYS): " + e.Seccomp
	case e.Signal != "":
		return "killed by signal " + e.Signal
	case e.Code != nil:
		return "exit status " + strconv.Itoa(*e.Code)
	}
	return "exit status unknown (adopted process)"
}

// Failed reports whether the exit counts as a failure for on-failure restarts.
func (e ExitInfo) Failed() bool { return e.Code == nil || *e.Code != 0 }

// Proc is one VMM child process, spawned by this agent or adopted from /proc.
type Proc struct {
	Name     string
	PID      int
	Ticks    uint64
	Since    time.Time
	Restarts int
	cmd      *exec.Cmd // nil when adopted
	pidfd    int       // -1 for spawned children (cmd waits for them)
	done     chan struct{}
	Exit     ExitInfo       // valid once Done is closed
	VMM      *vmmapi.Client // its control API (api.sock in the VM's directory)
	Grace    time.Duration  // how long a stop waits for the guest to shut down
	HA       bool           // an HA VM: its self-fencing watchdog is fed from the host's lease
	// CPUFeatures are the CPU features the guest started with (VMStatus.CPUFeatures).
	CPUFeatures []string

	mu sync.Mutex
	st State // read with State, changed with Update

	// Jail names the VMM's jail ("" if unjailed; its uid is jail.IDs'),
	// JailInstance this start of it: jail.AddFile makes a disk hot-added
	// later visible there.
	Jail, JailInstance string

	// Mirror lists the disk copies a destination VMM of a live migration
	// receives; they are removed if the VM does not come here (under the
	// owner's lock).
	Mirror []string
}

// State is what the agent asked of a VMM process and what it is doing
// with it; a Proc keeps one under its mu.
type State struct {
	StopReq    bool          // the agent asked it to stop: its exit is not a failure
	RestartReq bool          // start it again at once after the exit
	Stopping   bool          // the stop sequence runs
	Paused     bool          // the agent paused the guest
	Migration  chan struct{} // non-nil during a live migration; closed when decided
	Migrated   bool          // the guest now runs on another host
}

// Exited is a Proc for a VMM that ended while no agent watched it: its
// exit status is unknown and Done is closed.
func Exited(name string, pid int, since time.Time, restarts int, st State) *Proc {
	p := &Proc{Name: name, PID: pid, Since: since, Restarts: restarts, pidfd: -1, done: make(chan struct{}), st: st}
	close(p.done)
	return p
}

// Done is closed when the process has exited (Exit is then valid).
func (p *Proc) Done() <-chan struct{} { return p.done }

// Adopted reports whether the process was found in /proc rather than
// spawned by this agent.
func (p *Proc) Adopted() bool { return p.cmd == nil }

// State returns a copy of the process's state.
func (p *Proc) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// Update changes the process's state with fn, atomically.
func (p *Proc) Update(fn func(s *State)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(&p.st)
}

// BeginMigration marks the VMM as migrating (State.Migration), unless it
// is migrating or stopping already; it reports whether it did.
func (p *Proc) BeginMigration() bool {
	var ok bool
	p.Update(func(s *State) {
		if ok = s.Migration == nil && !s.Stopping; ok {
			s.Migration = make(chan struct{})
		}
	})
	return ok
}

// EndMigration ends the migration BeginMigration (or an adoption during a
// migration) marked: migrated says whether the guest now runs on the
// destination, so that the VMM's exit means nothing here. Its exit is
// handled only after this.
func (p *Proc) EndMigration(migrated bool) {
	var ch chan struct{}
	p.Update(func(s *State) {
		ch, s.Migration = s.Migration, nil
		s.Migrated = s.Migrated || migrated
	})
	if ch != nil {
		close(ch)
	}
}

// RequestRestart makes the coming exit a restart: a new VMM starts at once.
func (p *Proc) RequestRestart() { p.Update(func(s *State) { s.RestartReq = true }) }

// killAfter is how long the VMM has to exit after SIGTERM before SIGKILL.
const killAfter = 5 * time.Second

// ConfigFile is the VMM's config file in the VM's folder: the agent
// writes it before every start and the VMM reads it once (govisor run
// --config), so a running VMM never depends on it.
const ConfigFile = "vmm.json"

// VMMConfig turns a definition into the VMM's config. The sockets are
// relative to the VMM's working directory, the VM's directory: that keeps
// them under the 108-byte limit of a Unix socket path.
func VMMConfig(s api.VMSpec) (vmmconfig.Config, error) {
	var mib uint64
	if s.Memory != "" { // empty is the VMM's default, which is the agent's
		var err error
		if mib, err = api.ParseMemoryMiB(s.Memory); err != nil {
			return vmmconfig.Config{}, fmt.Errorf("agent: memory of %s: %w", s.Name, err)
		}
	}
	c := vmmconfig.Config{APISock: APISock, ConsoleSock: ConsoleSock,
		Kernel: s.Kernel, Firmware: s.Firmware, Initrd: s.Initrd, Cmdline: s.Cmdline, CPUs: s.CPUs, MemoryMiB: mib, Boot: s.Boot,
		DebugExit: s.DebugExit, RNG: s.RNG, Balloon: s.Balloon, Nets: nets(s)}
	for _, d := range s.Disks {
		c.Disks = append(c.Disks, vmmconfig.Disk{Path: d.Path, ReadOnly: d.ReadOnly, Format: d.Format})
	}
	if s.Firmware == api.FirmwareUEFI {
		c.FirmwareVars = UEFIVarsFile
	}
	if s.Firmware != "" {
		c.UUID = s.UUID // a kernel booted directly reads no SMBIOS
	}
	return c, nil
}

// UEFIVarsFile is a UEFI VM's variable file in its folder: made from
// OVMF's template on the first start, then kept (and moved with the VM)
// so that what its firmware stores survives restarts.
const UEFIVarsFile = "uefi-vars.fd"

// nets are the VMM's network interfaces for s's NICs.
func nets(s api.VMSpec) []vmmconfig.Net {
	var nets []vmmconfig.Net
	for i, nic := range s.NICs {
		nets = append(nets, vmmconfig.Net{TAP: TAPName(s.Name, i), MAC: nic.MAC})
	}
	return nets
}

// RestoreConfig is the config of a VMM that resumes a VM from the snapshot
// in snapDir instead of booting it.
func RestoreConfig(s api.VMSpec, snapDir string) vmmconfig.Config {
	return vmmconfig.Config{APISock: APISock, ConsoleSock: ConsoleSock, Restore: snapDir, DebugExit: s.DebugExit}
}

// IncomingConfig is the config of a live migration's destination VMM,
// waiting on addr.
func IncomingConfig(s api.VMSpec, addr string) (vmmconfig.Config, error) {
	c, err := VMMConfig(s)
	c.Incoming = addr
	return c, err
}

// Spawn starts a VMM child with the config c, written into dir: argv[0]
// is the marker, stdin is /dev/null, the console goes to consolePath and
// VMM messages to logPath.
// The child gets its own process group and no parent-death signal, so it
// survives the agent (a restarted agent adopts it).
func Spawn(exe, mark, dir string, s api.VMSpec, c vmmconfig.Config, consolePath, logPath string) (*Proc, error) {
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
	args, attr := []string{"run", "--config", ConfigFile}, &syscall.SysProcAttr{Setpgid: true}
	jailID, inst := "", ""
	if c.Jail != nil {
		// The jail's first process enters the jail and becomes the VMM
		// (same pid, same argv[0]), limited by its cgroup from the start.
		jailID = c.Jail.ID
		var cg int
		var err error
		if inst, cg, err = jail.Prepare(jailID, jailLimits(s, c)); err != nil {
			return nil, fmt.Errorf("agent: VMM of %s: %w", s.Name, err)
		}
		if cg >= 0 {
			defer unix.Close(cg)
		}
		j := *c.Jail
		j.Instance = inst
		c.Jail = &j
		args, attr = []string{"jail-exec", "--config", ConfigFile}, jail.SysProcAttr(cg)
	}
	if err := vmmconfig.WriteFile(filepath.Join(dir, ConfigFile), c); err != nil {
		if inst != "" {
			jail.Cleanup(inst)
		}
		return nil, fmt.Errorf("agent: VMM of %s: %w", s.Name, err)
	}
	// A stale socket of an earlier VMM would make the agent talk to nothing.
	os.Remove(filepath.Join(dir, APISock))
	os.Remove(filepath.Join(dir, ConsoleSock))
	cmd := exec.Command(exe, args...)
	cmd.SysProcAttr = attr
	cmd.Args[0] = mark
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = con, lg
	if err := cmd.Start(); err != nil {
		if inst != "" {
			jail.Cleanup(inst)
		}
		return nil, fmt.Errorf("agent: start VMM of %s (%s): %w", s.Name, exe, err)
	}
	p := &Proc{Name: s.Name, PID: cmd.Process.Pid, Since: time.Now().UTC(), cmd: cmd, pidfd: -1, done: make(chan struct{}), Jail: jailID, JailInstance: inst,
		VMM: vmmapi.NewClient(filepath.Join(dir, APISock))}
	// A child that already exited has no start time; its Wait reports why.
	p.Ticks, _ = StartTicks(p.PID)
	go func() {
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.Exit.Signal = fmt.Sprintf("%d (%s)", int(ws.Signal()), ws.Signal())
		} else {
			c := cmd.ProcessState.ExitCode()
			p.Exit.Code = &c
		}
		if p.Exit.Failed() {
			p.Exit.Seccomp = seccompViolation(logPath)
		}
		if inst != "" {
			jail.Cleanup(inst)
		}
		close(p.done)
	}()
	return p, nil
}

// AdoptProc takes over a running VMM process found in /proc. Its exit status is
// unknowable (it is not our child); a pidfd says when it exits and names it
// for signals without the risk of pid reuse.
// jailID names its jail ("" if it runs unjailed), whose instance is
// cleaned up on its exit.
func AdoptProc(ctx context.Context, name, dir, jailID string, pid int, ticks uint64, since time.Time) (*Proc, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("agent: pidfd of %s (pid %d): %w", name, pid, err)
	}
	// The pid may have been reused between the /proc scan and pidfd_open.
	if t, err := StartTicks(pid); err != nil || t != ticks {
		unix.Close(fd)
		return nil, fmt.Errorf("agent: process %d of %s is gone", pid, name)
	}
	p := &Proc{Name: name, PID: pid, Ticks: ticks, Since: since, pidfd: fd, done: make(chan struct{}),
		VMM: vmmapi.NewClient(filepath.Join(dir, APISock))}
	if jailID != "" {
		if inst := jail.InstanceOf(jailID, pid); inst != "" {
			p.Jail, p.JailInstance = jailID, inst
		}
	}
	go func() {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for ctx.Err() == nil {
			n, err := unix.Poll(fds, 500)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return
			}
			if n > 0 {
				if p.JailInstance != "" {
					jail.Cleanup(p.JailInstance)
				}
				close(p.done)
				return
			}
		}
	}()
	return p, nil
}

// Signal sends sig to the VMM process.
func (p *Proc) Signal(sig syscall.Signal) error {
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

// Stop shuts the VM down gracefully: it presses the guest's ACPI power
// button through the VMM API and gives the guest p.Grace to power off, then
// sends the VMM SIGTERM (the VMM stops the guest at once) and SIGKILL
// killAfter later. Without a VMM API (or with no grace) it starts at
// SIGTERM. Only the first call runs the sequence.
func (p *Proc) Stop() {
	var running, paused bool
	p.Update(func(s *State) {
		s.StopReq = true
		running, paused = s.Stopping, s.Paused
		s.Stopping = true
	})
	if running {
		return
	}
	go func() {
		if p.Grace > 0 && p.VMM != nil && p.Alive() {
			if paused {
				QuickCall(p.VMM.Resume) // a paused guest cannot see the button
			}
			if _, err := QuickCall(p.VMM.Shutdown); err == nil {
				select {
				case <-p.done:
					return
				case <-time.After(p.Grace):
				}
			}
		}
		p.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(killAfter):
			p.Signal(syscall.SIGKILL)
		}
	}()
}

// Alive reports whether the process has not exited yet.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill stops the VMM at once (force-stop).
func (p *Proc) Kill() {
	p.Update(func(s *State) { s.StopReq = true })
	p.Signal(syscall.SIGKILL)
}

// LastLine returns the last non-empty line of the file's final 4 KiB: the
// VMM's own message on why it stopped.
func LastLine(path string) string {
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
