package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/migration"
	"github.com/govisor/govisor/internal/vm"
	"github.com/govisor/govisor/internal/vmmapi"
)

type runOptions struct {
	kernel, initrd, cmdline string
	cpus                    int
	memory                  string
	boot                    string
	guestDecompress         bool
	onReboot                string
	template                string
	debugExit               bool
	verbose                 bool
	disks                   []string
	rng                     bool
	apiSock                 string
	consoleSock             string
	restore                 string
	nets                    []string
	vsock                   string
	balloon                 bool
	incoming                string
	tlsCert, tlsKey, tlsCA  string
	cpusSet                 bool
}

func newRunCmd() *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:     "run --kernel PATH [--initrd PATH] [--cmdline ARGS] [--cpus N] [--memory SIZE]",
		Aliases: []string{"vmm"}, // the per-VM monitor process the agent runs
		Short:   "Boot a VM in the foreground with its serial console on this terminal",
		Long: `Boot a VM in the foreground. The serial console is connected to the terminal
(raw mode; press Ctrl-A X to quit) or to stdin/stdout when they are pipes.
The process exits 0 when the guest powers off; a guest reboot restarts the
guest unless --on-reboot=exit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.cpusSet = cmd.Flags().Changed("cpus")
			return runVM(o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kernel, "kernel", "", "kernel image: bzImage or ELF vmlinux (required)")
	f.StringVar(&o.initrd, "initrd", "", "initial ramdisk (cpio, optionally compressed)")
	f.StringVar(&o.cmdline, "cmdline", "console=ttyS0", "kernel command line")
	f.IntVar(&o.cpus, "cpus", 1, fmt.Sprintf("number of vCPUs (1-%d)", vm.MaxCPUs))
	f.StringVar(&o.memory, "memory", "256M", "guest RAM (e.g. 512M, 2G; a plain number is MiB)")
	f.StringVar(&o.boot, "boot", "linux64", "entry protocol: linux64 (64-bit boot protocol) or pvh")
	f.BoolVar(&o.guestDecompress, "guest-decompress", false, "let the guest decompress a bzImage instead of unpacking it on the host")
	f.StringVar(&o.onReboot, "on-reboot", "restart", "what a guest reboot does: restart or exit")
	f.StringVar(&o.template, "cpu-template", "auto", "CPU template: auto, host or pvm")
	f.BoolVar(&o.debugExit, "debug-exit", false, "enable the isa-debug-exit port 0xf4: a guest write ends govisor with that value as exit code")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print how the guest was loaded and why it stopped")
	f.StringArrayVar(&o.disks, "disk", nil, "virtio-blk disk: path=FILE[,readonly][,direct][,format=FMT][,serial=ID][,queues=N] (repeatable; raw, qcow2, vmdk, vhd, vhdx)")
	f.BoolVar(&o.rng, "rng", false, "add a virtio-rng device fed by the host's getrandom")
	f.StringArrayVar(&o.nets, "net", nil, "virtio-net on a TAP device: tap=NAME[,mac=MAC] (repeatable; the TAP is created if it does not exist)")
	f.StringVar(&o.vsock, "vsock", "", "virtio-vsock: cid=N,uds=PATH (host connects to PATH and sends \"CONNECT <port>\\n\"; guest connections to port P reach PATH_P)")
	f.BoolVar(&o.balloon, "balloon", false, "add a virtio-balloon device (govisor ctl balloon MIB sets its size)")
	f.StringVar(&o.consoleSock, "console-sock", "", "also serve the serial console on this Unix socket: every client sees the guest's output and its input goes to the guest")
	f.StringVar(&o.apiSock, "api-sock", "", "serve the VMM control API (pause, resume, snapshot, stop) on this Unix socket")
	f.StringVar(&o.incoming, "incoming", "", "wait for a live migration on this TCP address (HOST:PORT), or on a Unix socket (unix:PATH: a source VMM on this host, whose vsock connections then stay open; give the source's --memory; --disk here names blank mirror targets for ctl migrate --mirror-disks, --net and --vsock this host's TAPs and socket) instead of booting")
	f.StringVar(&o.tlsCert, "tls-cert", "", "with --incoming: require mutual TLS, presenting this certificate (PEM)")
	f.StringVar(&o.tlsKey, "tls-key", "", "with --incoming: the private key of --tls-cert")
	f.StringVar(&o.tlsCA, "tls-ca", "", "with --incoming: CA bundle (PEM) that must have signed the source's certificate")
	f.StringVar(&o.restore, "restore", "", "start from the snapshot in this folder (made with govisor ctl snapshot) instead of booting")
	return cmd
}

// ParseMemoryMiB parses --memory (512M, 2G; a plain number is MiB).
func ParseMemoryMiB(s string) (uint64, error) {
	n, err := api.ParseMemoryMiB(s)
	if err != nil {
		return 0, fmt.Errorf("--memory %w", err)
	}
	return n, nil
}

// receiveMigration waits for one live migration on l. With tlsCfg the
// source must authenticate: a connection that fails the TLS handshake is
// refused and the wait goes on, so that a stranger cannot end it.
func receiveMigration(l net.Listener, cfg vm.Config, tlsCfg *tls.Config) (*vm.Machine, error) {
	defer l.Close()
	fmt.Fprintf(os.Stderr, "govisor: waiting for a migration on %s\n", l.Addr())
	for {
		conn, err := l.Accept()
		if err != nil {
			return nil, err
		}
		if tlsCfg != nil {
			tc := tls.Server(conn, tlsCfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := tc.HandshakeContext(ctx)
			cancel()
			if err != nil {
				fmt.Fprintf(os.Stderr, "govisor: refused a migration connection from %s: TLS handshake: %v\n", conn.RemoteAddr(), err)
				conn.Close()
				continue
			}
			conn = tc
		}
		// Incoming owns conn now: the migration closes it when it is over
		// (after the handover, or after post-copy).
		return vm.Incoming(context.Background(), conn, cfg)
	}
}

// incomingTLS builds the --incoming listener's TLS configuration, or nil
// without the --tls-* flags.
func (o *runOptions) incomingTLS() (*tls.Config, error) {
	if o.tlsCert == "" && o.tlsKey == "" && o.tlsCA == "" {
		return nil, nil
	}
	if o.incoming == "" {
		return nil, errors.New("--tls-cert, --tls-key and --tls-ca secure --incoming: give --incoming HOST:PORT too")
	}
	if o.tlsCert == "" || o.tlsKey == "" || o.tlsCA == "" {
		return nil, errors.New("--tls-cert, --tls-key and --tls-ca go together: mutual TLS needs all three")
	}
	if strings.HasPrefix(o.incoming, unixPrefix) {
		return nil, errors.New("--tls-* secure a TCP --incoming; a unix: socket never leaves this host (its file mode keeps other users out)")
	}
	return migration.ServerTLSConfig(o.tlsCert, o.tlsKey, o.tlsCA)
}

// ParseDisk parses a --disk value: path=FILE[,readonly][,direct][,format=F][,serial=S][,queues=N].
// A bare FILE is accepted as the path.
func ParseDisk(s string) (vm.Disk, error) {
	var d vm.Disk
	for i, part := range strings.Split(s, ",") {
		k, v, hasValue := strings.Cut(part, "=")
		switch {
		case k == "path" && hasValue:
			d.Path = v
		case i == 0 && !hasValue:
			d.Path = k
		case (k == "readonly" || k == "ro") && (!hasValue || v == "on" || v == "true"):
			d.ReadOnly = true
		case k == "direct" && (!hasValue || v == "on" || v == "true"):
			d.Direct = true
		case k == "format" && hasValue:
			d.Format = v
		case k == "serial" && hasValue:
			d.Serial = v
		case k == "queues" && hasValue:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 16 {
				return d, fmt.Errorf("--disk %q: queues=%s: give 1 to 16", s, v)
			}
			d.Queues = n
		default:
			return d, fmt.Errorf("--disk %q: unknown option %q: use path=FILE[,readonly][,direct][,format=FMT][,serial=ID][,queues=N]", s, part)
		}
	}
	if d.Path == "" {
		return d, fmt.Errorf("--disk %q: no path: use path=FILE", s)
	}
	if _, err := os.Stat(d.Path); err != nil {
		return d, fmt.Errorf("--disk %q: %w", s, err)
	}
	return d, nil
}

func (o *runOptions) config() (vm.Config, error) {
	var cfg vm.Config
	if o.kernel == "" && o.restore == "" && o.incoming == "" {
		return cfg, errors.New("--kernel is required: the path of a bzImage or vmlinux (or --restore DIR, or --incoming HOST:PORT)")
	}
	mib, err := ParseMemoryMiB(o.memory)
	if err != nil {
		return cfg, err
	}
	var disks []vm.Disk
	for _, d := range o.disks {
		disk, err := ParseDisk(d)
		if err != nil {
			return cfg, err
		}
		disks = append(disks, disk)
	}
	var nets []vm.Net
	for _, n := range o.nets {
		nc, err := ParseNet(n)
		if err != nil {
			return cfg, err
		}
		nets = append(nets, nc)
	}
	var vs *vm.Vsock
	if o.vsock != "" {
		if vs, err = ParseVsock(o.vsock); err != nil {
			return cfg, err
		}
	}
	if (o.restore != "" || o.incoming != "") && o.kernel == "" {
		// The snapshot or the migration stream describes the machine; a
		// migration destination may name its own disks (mirror targets),
		// TAPs and vsock socket.
		return vm.Config{MemoryMiB: mib, Disks: disks, Nets: nets, Vsock: vs}, nil
	}
	switch o.onReboot {
	case "restart", "exit":
	default:
		return cfg, fmt.Errorf("--on-reboot %q: use restart or exit", o.onReboot)
	}
	switch o.template {
	case "auto", "host", "pvm":
	default:
		return cfg, fmt.Errorf("--cpu-template %q: use auto, host or pvm", o.template)
	}
	var boot vm.BootMode
	switch o.boot {
	case "linux64":
		boot = vm.BootLinux64
	case "pvh":
		boot = vm.BootPVH
	default:
		return cfg, fmt.Errorf("--boot %q: use linux64 or pvh", o.boot)
	}
	kernel, err := os.ReadFile(o.kernel)
	if err != nil {
		return cfg, fmt.Errorf("--kernel: %w", err)
	}
	var initrd []byte
	if o.initrd != "" {
		if initrd, err = os.ReadFile(o.initrd); err != nil {
			return cfg, fmt.Errorf("--initrd: %w", err)
		}
	}
	return vm.Config{
		CPUs: o.cpus, MemoryMiB: mib, Kernel: kernel, Initrd: initrd, Cmdline: o.cmdline,
		Boot: boot, GuestDecompress: o.guestDecompress, DebugExit: o.debugExit, Template: o.template,
		Disks: disks, RNG: o.rng, Nets: nets, Vsock: vs, Balloon: o.balloon,
	}, nil
}

func runVM(o *runOptions) error {
	cfg, err := o.config()
	if err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	tlsCfg, err := o.incomingTLS()
	if err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	stdout := newConsoleWriter(os.Stdout)
	defer stdout.Close()
	con, err := attachConsole(os.Stdin)
	if err != nil {
		return err
	}
	defer con.restore()
	var out io.Writer = stdout
	if o.consoleSock != "" {
		hub, err := listenConsoleSock(o.consoleSock, con.bytes)
		if err != nil {
			return &ExitError{Code: 1, Err: err}
		}
		defer hub.Close()
		out = teeConsole{out: stdout, hub: hub}
	}
	cfg.Console = out
	// Listen for the migration before the API socket exists, so that a
	// caller who sees the API up can start the migration at once.
	var incoming net.Listener
	if o.incoming != "" {
		if incoming, err = listenMigration(o.incoming); err != nil {
			return &ExitError{Code: 1, Err: fmt.Errorf("--incoming %s: %w", o.incoming, err)}
		}
		defer incoming.Close()
	}
	ctl := &machineCtl{}
	if o.apiSock != "" {
		l, err := vmmapi.Listen(o.apiSock)
		if err != nil {
			return &ExitError{Code: 1, Err: err}
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go vmmapi.ServeListener(ctx, l, ctl)
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	for boot := 1; ; boot++ {
		var m *vm.Machine
		if o.restore != "" && boot == 1 {
			m, err = vm.RestoreSnapshot(o.restore, out)
		} else if o.incoming != "" && boot == 1 {
			in := vm.Config{MemoryMiB: cfg.MemoryMiB, Console: out, RNG: o.rng, Balloon: o.balloon, DebugExit: o.debugExit,
				Disks: cfg.Disks, Nets: cfg.Nets, Vsock: cfg.Vsock}
			if o.cpusSet {
				// The machine's shape is known: build it before the migration
				// so that the guest's downtime does not include it.
				in.CPUs = o.cpus
			}
			m, err = receiveMigration(incoming, in, tlsCfg)
		} else {
			m, err = vm.New(cfg)
		}
		if err != nil {
			return &ExitError{Code: 1, Err: err}
		}
		ctl.set(m)
		if o.verbose {
			fmt.Fprintf(os.Stderr, "govisor: boot %d: %s; KVM %s, CPU template %s\n", boot, m.BootInfo(), m.Flavor(), m.Template())
		}
		stopInput := con.pump(m)
		if err := m.Start(); err != nil {
			m.Close()
			return &ExitError{Code: 1, Err: err}
		}
		var sig os.Signal
		select {
		case <-m.Done():
		case sig = <-sigs:
			m.Stop(vm.Exit{Reason: vm.ExitHost, Detail: "signal " + sig.String()})
		case <-con.quit:
			m.Stop(vm.Exit{Reason: vm.ExitHost, Detail: "Ctrl-A X"})
		}
		ex := m.Wait()
		ctl.set(nil)
		stopInput()
		m.Close()
		stdout.Flush()
		if o.verbose {
			fmt.Fprintf(os.Stderr, "govisor: guest stopped: %s %s (exits per vCPU %v)\n", ex.Reason, ex.Detail, m.Exits())
			if t := m.FirstExit(); !t.IsZero() {
				fmt.Fprintf(os.Stderr, "govisor: first VM exit at unix-ns %d\n", t.UnixNano())
			}
		}
		switch ex.Reason {
		case vm.ExitPowerOff:
			return nil
		case vm.ExitReset:
			if o.onReboot == "exit" {
				return nil
			}
			if o.kernel == "" {
				fmt.Fprintf(os.Stderr, "govisor: guest rebooted (%s); a VM restored or migrated without --kernel cannot boot again\n", ex.Detail)
				return nil
			}
			fmt.Fprintf(os.Stderr, "govisor: guest rebooted (%s); restarting it\n", ex.Detail)
			continue
		case vm.ExitDebug:
			if ex.Code == 0 {
				return nil
			}
			return &ExitError{Code: ex.Code & 0xFF}
		case vm.ExitHost:
			if sig != nil {
				return &ExitError{Code: 128 + int(sig.(syscall.Signal))}
			}
			return nil
		case vm.ExitMigrated:
			fmt.Fprintf(os.Stderr, "govisor: %s\n", ex.Detail)
			return nil
		case vm.ExitHalt:
			return &ExitError{Code: 1, Err: errors.New("guest halted with interrupts off (HLT exit)")}
		default:
			return &ExitError{Code: 1, Err: ex.Err}
		}
	}
}
