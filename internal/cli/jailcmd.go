package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/internal/jail"
	"github.com/govisor/govisor/internal/seccomp"
	"github.com/govisor/govisor/internal/vm"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// newJailExecCmd is the first process of a VMM's jail (hidden: `govisor
// run --jail` and the host agent start it with jail.SysProcAttr). It
// plans the jail of its config, enters it and executes `govisor run` on
// the jailed config.
func newJailExecCmd() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:    "jail-exec --config FILE",
		Short:  "Enter a VMM's jail and run the VMM there (started by govisor run --jail and the agent)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			// Never unlocked: the thread that drops the bounding set and
			// sets no_new_privs must be the one that executes the VMM.
			runtime.LockOSThread()
			return jailExec(config)
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "the VMM's config, with its jail")
	return cmd
}

// jailExec enters the jail of the config at path and executes the VMM.
func jailExec(path string) error {
	cfg, err := vmmconfig.Load(path)
	if fd, ok := strings.CutPrefix(path, "/proc/self/fd/"); ok {
		// The pipe govisor run --jail passed the config on: the VMM
		// inherits no descriptor it does not use.
		if n, err := strconv.Atoi(fd); err == nil && n > 2 {
			syscall.Close(n)
		}
	}
	if err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	if cfg.Jail == nil {
		return &ExitError{Code: 2, Err: errors.New("jail-exec: the config has no jail")}
	}
	cwd, err := os.Getwd()
	if err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	var snapDisks []string
	if cfg.Restore != "" {
		if snapDisks, err = vm.SnapshotDisks(joinCwd(cwd, cfg.Restore)); err != nil {
			return &ExitError{Code: 1, Err: err}
		}
	}
	spec, inner, err := jail.ForVMM(cfg, cwd, snapDisks)
	if err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	if spec.Exe, err = os.Executable(); err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	data, err := vmmconfig.Marshal(inner)
	if err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	// argv[0] stays: the agent finds its VMMs by it.
	argv := []string{os.Args[0], "run", "--config", jail.ConfigPath}
	return &ExitError{Code: 1, Err: jail.Enter(spec, data, argv, jailEnv())}
}

// jailEnv is the environment the jailed VMM gets: the Go runtime's
// settings and govisor's own (test hooks), nothing of the host's.
func jailEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GOVISOR_") || strings.HasPrefix(kv, "GOTRACEBACK=") ||
			strings.HasPrefix(kv, "GODEBUG=") || strings.HasPrefix(kv, "GOMAXPROCS=") {
			env = append(env, kv)
		}
	}
	return env
}

// joinCwd makes the relative path p absolute against cwd.
func joinCwd(cwd, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(cwd, p)
}

// JailLimits are the cgroup limits of a jailed VMM of cfg (a restored
// one's come from its snapshot).
func JailLimits(cfg vmmconfig.Config) jail.Limits {
	d := cfg.WithDefaults()
	cpus, mib := d.CPUs, d.MemoryMiB
	if cfg.Restore != "" {
		if sc, err := vm.SnapshotConfig(cfg.Restore); err == nil {
			cpus, mib = sc.CPUs, sc.MemoryMiB
		}
	}
	return jail.Limits{CPUs: cpus, MemoryMiB: mib, Pids: jail.PidsMax(max(cpus, 1))}
}

// runJailed runs the VMM of cfg (cfg.Jail set) jailed, in the foreground
// as `govisor run` does: the console stays on this process's stdin and
// stdout, its signals go to the VMM, its exit status is the VMM's, and a
// VMM ended by its seccomp filter is reported with the syscall.
func runJailed(cfg vmmconfig.Config) error {
	if os.Geteuid() != 0 {
		return &ExitError{Code: 2, Err: errors.New("--jail needs root: it makes namespaces, mounts and a cgroup, and then runs the VMM as an unprivileged uid")}
	}
	inst, cg, err := jail.Prepare(cfg.Jail.ID, JailLimits(cfg))
	if err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	defer jail.Cleanup(inst)
	j := *cfg.Jail
	j.Instance = inst
	cfg.Jail = &j
	data, err := vmmconfig.Marshal(cfg)
	if err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	exe, err := os.Executable()
	if err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	cmd := exec.Command(exe, "jail-exec", "--config", "/proc/self/fd/3")
	cmd.Args[0] = os.Args[0]
	var tail tailBuffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, io.MultiWriter(os.Stderr, &tail)
	cmd.ExtraFiles = []*os.File{r}
	cmd.SysProcAttr = jail.SysProcAttr(cg)
	err = cmd.Start()
	r.Close()
	if cg >= 0 {
		syscall.Close(cg)
	}
	if err != nil {
		w.Close()
		return &ExitError{Code: 1, Err: fmt.Errorf("jail: start the VMM: %w", err)}
	}
	w.Write(data) // a small config fits the pipe
	w.Close()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	if v, ok := seccomp.ParseViolation(tail.Bytes()); ok {
		return &ExitError{Code: 128 + int(syscall.SIGSYS), Err: fmt.Errorf("the VMM was killed by its seccomp filter (SIGSYS): %s", v)}
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &ExitError{Code: 128 + int(ws.Signal()), Err: fmt.Errorf("the VMM was killed by signal %d (%s)", int(ws.Signal()), ws.Signal())}
		}
		return &ExitError{Code: ee.ExitCode()} // the VMM said why
	}
	if err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	return nil
}

// tailBuffer keeps the last 64 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 64 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailMax {
		t.buf = bytes.Clone(t.buf[len(t.buf)-tailMax:])
	}
	return len(p), nil
}

// Bytes returns what the buffer holds.
func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.buf)
}
