// Package vmm is the VMM process of one VM: from a validated config it
// builds the machine (booting a kernel, restoring a snapshot or receiving
// a live migration), serves its control API and console socket, runs it
// across guest reboots and turns its end into the process's exit status.
// `govisor run` is a flag parser over it; the host agent starts it with a
// config file.
package vmm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/govisor/govisor/internal/cli/cmdutil"
	"github.com/govisor/govisor/internal/fence"
	"github.com/govisor/govisor/internal/seccomp"
	"github.com/govisor/govisor/internal/vm"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
	"github.com/govisor/govisor/internal/vmmapi"
)

// ExitFenced is the exit status of a VMM that stopped its guest because
// its watchdog was not fed or it lost a disk lease.
const ExitFenced = vmmconfig.ExitFenced

// ExitError is how Run ends other than with status 0: Code is the
// process's exit status, Err (if any) the message for the user. It is the
// commands' own exit error, so govisor run passes it on as it is.
type ExitError = cmdutil.ExitError

// Console is the host's end of the guest's serial console, which the
// process running the VMM provides: a terminal, pipes, or log files.
type Console interface {
	io.Writer // the guest's output
	// Flush writes out buffered output; Run calls it when a guest stops.
	Flush()
	// Input delivers host input for the guest.
	Input() <-chan []byte
	// Quit is closed when the user ends the VMM from the console (as
	// Ctrl-A X on a terminal); nil if it cannot be.
	Quit() <-chan struct{}
}

// Options are what New takes from the process the VMM runs in.
type Options struct {
	Names vmmconfig.Names // how messages name config fields; nil: JSON paths
	Log   io.Writer       // the VMM's own messages; nil: os.Stderr
}

// VMM is one VM's monitor, its config checked and its files read, ready
// to run.
type VMM struct {
	cfg    vmmconfig.Config // with the defaults
	names  vmmconfig.Names
	log    io.Writer
	mcfg   vm.Config // the machine a boot builds
	tlsCfg *tls.Config

	// While running:
	fencing   *fencing
	console   Console
	ctl       *machineCtl
	sigs      chan os.Signal
	report    chan os.Signal // SIGUSR1: write the machine report (vm.Machine WriteDebugReport) to the log
	sockInput chan []byte
}

// New validates cfg and reads what it names (kernel, initrd, TLS files),
// so that what a config can get wrong fails before anything starts. Its
// errors are *ExitError with status 2.
func New(cfg vmmconfig.Config, opt Options) (*VMM, error) {
	if err := cfg.ValidateNamed(opt.Names); err != nil {
		return nil, &ExitError{Code: 2, Err: err}
	}
	v := &VMM{cfg: cfg.WithDefaults(), names: opt.Names, log: opt.Log}
	if v.log == nil {
		v.log = os.Stderr
	}
	var err error
	if v.mcfg, err = machineConfig(v.cfg, opt.Names); err != nil {
		return nil, &ExitError{Code: 2, Err: err}
	}
	if v.tlsCfg, err = incomingTLS(v.cfg); err != nil {
		return nil, &ExitError{Code: 2, Err: err}
	}
	return v, nil
}

// Run is the VMM with console as the host's end of the serial console: it
// builds the machine, serves the API and console sockets, and runs the
// guest until it powers off, and across reboots. SIGINT, SIGTERM and
// SIGHUP stop the guest. It returns nil for exit status 0 and an
// *ExitError otherwise: 1 when the machine cannot be built or fails,
// 128+N after signal N, and the guest's value on a debug exit. Run once.
func (v *VMM) Run(console Console) error {
	runStart := time.Now()
	cfg := v.cfg
	v.console = console
	var out io.Writer = console
	// Console socket clients type into the same UART as the host console.
	v.sockInput = make(chan []byte, 16)
	if cfg.ConsoleSock != "" {
		hub, err := listenConsoleSock(cfg.ConsoleSock, v.sockInput)
		if err != nil {
			return &ExitError{Code: 1, Err: fmt.Errorf("%s %s: %w", v.names.Name("consoleSock"), cfg.ConsoleSock, err)}
		}
		defer hub.Close()
		out = teeConsole{out: console, hub: hub}
	}
	mcfg := v.mcfg
	mcfg.Console = out
	// Listen for the migration before the API socket exists, so that a
	// caller who sees the API up can start the migration at once.
	var incoming net.Listener
	if cfg.Incoming != "" {
		var err error
		if incoming, err = listenMigration(cfg.Incoming); err != nil {
			return &ExitError{Code: 1, Err: fmt.Errorf("%s %s: %w", v.names.Name("incoming"), cfg.Incoming, err)}
		}
		defer incoming.Close()
	}
	v.ctl = &machineCtl{names: v.names, bootsAgain: bootsAgain(cfg)}
	v.fencing = newFencing(func(reason string) {
		if m := v.ctl.current(); m != nil {
			stopMachine(m, reason)
		}
	})
	defer v.fencing.release()
	v.ctl.fence = v.fencing.dog
	v.ctl.leases = v.fencing
	if cfg.FenceTTLMS > 0 {
		v.fencing.dog.Feed(time.Duration(cfg.FenceTTLMS) * time.Millisecond)
	}
	// A deadline that passed while the VMM started (a slow host: the jail,
	// the runtime) arms nothing: no guest runs before the agent's next
	// feed arms the watchdog (awaitFeed), and the agent feeds only while
	// its lease is confirmed. A deadline past MaxTTL is refused.
	awaitFeed := cfg.FenceDeadlineMonoNS > 0 && cfg.FenceDeadlineMonoNS <= fence.MonoNow()
	if cfg.FenceDeadlineMonoNS > 0 && !awaitFeed {
		if err := v.fencing.dog.FeedUntil(cfg.FenceDeadlineMonoNS); err != nil {
			return &ExitError{Code: 1, Err: fmt.Errorf("%s: %w", v.names.Name("fenceDeadlineMonoNS"), err)}
		}
	}
	// The API serves before the disk leases are taken: taking one can wait
	// out a dead holder's expiry (seconds), and all that time the agent
	// must be able to feed the fence watchdog armed above, or an HA
	// restart would fence itself before its guest ran.
	if cfg.APISock != "" {
		l, err := vmmapi.Listen(cfg.APISock)
		if err != nil {
			return &ExitError{Code: 1, Err: err}
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go vmmapi.ServeListener(ctx, l, v.ctl)
	}
	var leased []vmmconfig.Disk
	for _, d := range cfg.Disks {
		if d.Lease {
			leased = append(leased, d)
		}
	}
	leaseStart := time.Now()
	if err := v.fencing.takeLeases(cfg.LeaseOwner, leased); err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	if len(leased) > 0 {
		// Said always: after a host's power loss this wait (the dead
		// holder's expiry) is a part of the HA restart time.
		fmt.Fprintf(v.log, "govisor: took the leases of %d disk(s) in %v (%v after the VMM began)\n",
			len(leased), time.Since(leaseStart).Round(time.Millisecond), time.Since(runStart).Round(time.Millisecond))
	}
	v.sigs = make(chan os.Signal, 2)
	signal.Notify(v.sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(v.sigs)
	v.report = make(chan os.Signal, 1)
	signal.Notify(v.report, syscall.SIGUSR1)
	defer signal.Stop(v.report)
	if os.Getenv(TestLandlockProbe) == "1" {
		testLandlockProbe()
	}
	// The filter goes on once the sockets are open and before any guest
	// runs: what building, rebooting, snapshotting and migrating a machine
	// needs is on the allow-list.
	if err := seccomp.Install(seccomp.Mode(cfg.Seccomp)); err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	if cfg.Seccomp != "" && cfg.Seccomp != string(seccomp.ModeOff) && os.Getenv(TestSeccompViolation) == "1" {
		testSeccompViolation()
	}
	if awaitFeed {
		if err := v.fencing.awaitFeed(fenceStartWait); err != nil {
			return err
		}
	}
	for boot := 1; ; boot++ {
		if err := v.fencing.fenced(); err != nil {
			return err
		}
		var m *vm.Machine
		var err error
		switch {
		case cfg.Restore != "" && boot == 1:
			// A UEFI VM's saved variables go into its variable file.
			m, err = vm.RestoreSnapshotVars(cfg.Restore, out, mcfg.FirmwareVars)
		case cfg.Incoming != "" && boot == 1:
			m, err = receiveMigration(incoming, incomingConfig(cfg, mcfg), v.tlsCfg, v.log)
			if err == nil {
				// The source handed its leases over before GO: without
				// them this side must not run the guest (the source is
				// past resuming; no copy is safer than two).
				if err = v.fencing.adoptLeases(cfg.LeaseOwner, cfg.AdoptLeases); err != nil {
					m.Close()
					err = fmt.Errorf("the migrated guest was not started: %w", err)
				}
			}
		default:
			m, err = vm.New(mcfg)
		}
		if err != nil {
			return &ExitError{Code: 1, Err: err}
		}
		if again, err := v.run(boot, m); !again {
			return err
		}
	}
}

// run runs m until it stops and says what that means: boot again, or end
// the VMM with err.
func (v *VMM) run(boot int, m *vm.Machine) (again bool, err error) {
	v.ctl.set(m)
	if v.cfg.Verbose {
		fmt.Fprintf(v.log, "govisor: boot %d: %s; KVM %s, CPU template %s\n", boot, m.BootInfo(), m.Flavor(), m.Template())
	}
	stopInput := pump(m, v.console.Input(), v.sockInput)
	if err := m.Start(); err != nil {
		m.Close()
		return false, &ExitError{Code: 1, Err: err}
	}
	if r := v.fencing.reason.Load(); r != nil {
		stopMachine(m, *r) // fenced while the machine was being built
	}
	var sig os.Signal
wait:
	for {
		select {
		case <-m.Done():
			break wait
		case sig = <-v.sigs:
			m.Stop(vm.Exit{Reason: vm.ExitHost, Detail: "signal " + sig.String()})
			break wait
		case <-v.console.Quit():
			m.Stop(vm.Exit{Reason: vm.ExitHost, Detail: "Ctrl-A X"})
			break wait
		case <-v.report:
			// For a guest that stopped making progress: where its vCPUs
			// and queues stand, as QEMU's monitor would tell.
			if err := m.WriteDebugReport(v.log, 2*time.Second, 20*time.Second); err != nil {
				fmt.Fprintf(v.log, "govisor: %v\n", err)
			}
		}
	}
	ex := m.Wait()
	v.ctl.set(nil)
	stopInput()
	m.Close()
	v.console.Flush()
	if v.cfg.Verbose {
		fmt.Fprintf(v.log, "govisor: guest stopped: %s %s (exits per vCPU %v)\n", ex.Reason, ex.Detail, m.Exits())
		if t := m.FirstExit(); !t.IsZero() {
			fmt.Fprintf(v.log, "govisor: first VM exit at unix-ns %d\n", t.UnixNano())
		}
	}
	if err := v.fencing.fenced(); err != nil {
		fmt.Fprintf(v.log, "govisor: %v\n", err)
		return false, err
	}
	switch ex.Reason {
	case vm.ExitPowerOff:
		return false, nil
	case vm.ExitReset:
		if v.cfg.OnReboot == "exit" {
			return false, nil
		}
		if !bootsAgain(v.cfg) {
			fmt.Fprintf(v.log, "govisor: guest rebooted (%s); a VM restored or migrated without %s cannot boot again\n",
				ex.Detail, v.names.Name("kernel"))
			return false, nil
		}
		fmt.Fprintf(v.log, "govisor: guest rebooted (%s); restarting it\n", ex.Detail)
		return true, nil
	case vm.ExitDebug:
		if ex.Code == 0 {
			return false, nil
		}
		return false, &ExitError{Code: ex.Code & 0xFF}
	case vm.ExitHost:
		if sig != nil {
			return false, &ExitError{Code: 128 + int(sig.(syscall.Signal))}
		}
		return false, nil
	case vm.ExitMigrated:
		if err := v.ctl.writeMigrated(); err != nil {
			fmt.Fprintf(v.log, "govisor: %v\n", err)
		}
		fmt.Fprintf(v.log, "govisor: %s\n", ex.Detail)
		return false, nil
	case vm.ExitHalt:
		return false, &ExitError{Code: 1, Err: errors.New("guest halted with interrupts off (HLT exit)")}
	}
	return false, &ExitError{Code: 1, Err: ex.Err}
}

// pump forwards host input, from the console and from the console
// socket's clients, to m's UART until the returned stop is called. Input
// that arrives while no machine runs waits in the channels.
func pump(m *vm.Machine, in, sock <-chan []byte) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var p []byte
			select {
			case <-ctx.Done():
				return
			case p = <-in:
			case p = <-sock:
			}
			for len(p) > 0 {
				n, err := m.Console().InputWait(ctx, p)
				if err != nil {
					return
				}
				p = p[n:]
			}
		}
	}()
	return func() { cancel(); <-done }
}

// bootsAgain says whether a guest's reboot boots it again in this VMM: not
// under --on-reboot=exit, nor for a VM restored or migrated in without a
// kernel or firmware to boot.
func bootsAgain(c vmmconfig.Config) bool {
	return c.OnReboot != "exit" && (c.Kernel != "" || c.Firmware != "")
}
