package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/vm"
	"github.com/govisor/govisor/internal/vmm"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// runOptions are the flags of govisor run: a vmmconfig.Config, spelt out.
type runOptions struct {
	config                  string
	kernel, initrd, cmdline string
	firmware, firmwareImage string
	firmwareVars            string
	uuid                    string
	cpus                    int
	memory                  string
	boot                    string
	guestDecompress         bool
	onReboot                string
	template                string
	cpuFeatures             []string
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
	fenceTTL                time.Duration
	fenceDeadline           int64
	leaseOwner              string
	adoptLeases             string
	jail                    bool
	jailDir, jailID         string
	seccomp                 string
}

func newRunCmd() *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:     "run --kernel PATH [--initrd PATH] [--cmdline ARGS] [--cpus N] [--memory SIZE] | run --firmware bios|uefi --disk IMAGE | run --config FILE",
		Aliases: []string{"vmm"}, // the per-VM monitor process the agent runs
		Short:   "Boot a VM in the foreground with its serial console on this terminal",
		Long: `Boot a VM in the foreground. The serial console is connected to the terminal
(raw mode; press Ctrl-A X to quit) or to stdin/stdout when they are pipes.
The process exits 0 when the guest powers off; a guest reboot restarts the
guest unless --on-reboot=exit.

--config FILE takes the whole VM from a JSON file instead of flags (the host
agent starts its VMMs so, as Firecracker's --config-file): its fields are the
flags' (kernel, firmware, firmwareImage, firmwareVars, uuid, initrd, cmdline, cpus, memoryMiB, boot, guestDecompress,
onReboot, cpuTemplate, debugExit, verbose, disks[] {path, readOnly, direct,
format, serial, queues}, rng, nets[] {tap, mac}, vsock {cid, uds}, balloon,
apiSock, consoleSock, restore, incoming, tls {cert, key, ca}, fenceTTLMS, fenceDeadlineMonoNS,
leaseOwner, and disks[].lease); fields left
out get the flags' defaults, unknown fields are refused. --config and the
other flags exclude each other: one place says what the VM is.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, cfg, err := o.prepare(cmd.Flags())
			if err != nil {
				return err
			}
			if cfg.Jail != nil {
				return runJailed(cfg)
			}
			return runVMM(v)
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

// addFlags defines govisor run's flags on f, filling o.
func (o *runOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.config, "config", "", "take the VM from this JSON config file (as the agent writes it) instead of the flags below")
	f.StringVar(&o.kernel, "kernel", "", "kernel image: bzImage or ELF vmlinux (required)")
	f.StringVar(&o.firmware, "firmware", "", "boot the first disk's own boot loader through firmware instead of --kernel: bios (SeaBIOS) or uefi (OVMF)")
	f.StringVar(&o.firmwareImage, "firmware-image", "", "with --firmware: the firmware image (default: bios-256k.bin or OVMF_CODE_4M.fd from $GOVISOR_FIRMWARE_DIR, else /usr/share/seabios or /usr/share/OVMF)")
	f.StringVar(&o.firmwareVars, "firmware-vars", "", "with --firmware uefi: the VM's UEFI variable file, made from OVMF_VARS_4M.fd if missing (default: a scratch copy, gone at exit)")
	f.StringVar(&o.uuid, "uuid", "", "with --firmware: the machine's UUID, which the guest reads from firmware's SMBIOS tables (default: none)")
	f.StringVar(&o.initrd, "initrd", "", "initial ramdisk (cpio, optionally compressed)")
	f.StringVar(&o.cmdline, "cmdline", "console=ttyS0", "kernel command line")
	f.IntVar(&o.cpus, "cpus", 1, fmt.Sprintf("number of vCPUs (1-%d)", vm.MaxCPUs))
	f.StringVar(&o.memory, "memory", "256M", "guest RAM (e.g. 512M, 2G; a plain number is MiB)")
	f.StringVar(&o.boot, "boot", "linux64", "entry protocol: linux64 (64-bit boot protocol) or pvh")
	f.BoolVar(&o.guestDecompress, "guest-decompress", false, "let the guest decompress a bzImage instead of unpacking it on the host")
	f.StringVar(&o.onReboot, "on-reboot", "restart", "what a guest reboot does: restart or exit")
	f.StringVar(&o.template, "cpu-template", "auto", "CPU template: auto, host or pvm")
	f.StringSliceVar(&o.cpuFeatures, "cpu-features", nil, "the only CPU features the guest sees, as /proc/cpuinfo flags (comma-separated; a cluster's CPU baseline)")
	f.BoolVar(&o.debugExit, "debug-exit", false, "enable the isa-debug-exit port 0xf4: a guest write ends govisor with that value as exit code")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print how the guest was loaded and why it stopped")
	f.StringArrayVar(&o.disks, "disk", nil, "virtio-blk disk: path=FILE[,readonly][,direct][,lease][,format=FMT][,serial=ID][,queues=N] (repeatable; raw, qcow2, vmdk, vhd, vhdx, vdi; lease: hold a disk lease for --lease-owner)")
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
	f.DurationVar(&o.fenceTTL, "fence-ttl", 0, "arm the self-fencing watchdog: stop the guest and exit 3 unless the API's PUT /fence feeds it within this time (e.g. 5s)")
	f.Int64Var(&o.fenceDeadline, "fence-deadline-mono", 0, "arm the watchdog up to this CLOCK_MONOTONIC time in nanoseconds instead of --fence-ttl (a host agent's absolute deadline)")
	f.MarkHidden("fence-deadline-mono")
	f.BoolVar(&o.jail, "jail", false, "run the VMM jailed: own mount, PID, IPC and UTS namespaces, a root holding only this VM's files, an unprivileged uid, no capabilities, a cgroup with the VM's limits (needs root)")
	f.StringVar(&o.jailDir, "jail-dir", "", "with --jail: the VM's own folder, the only one the VMM can write (its sockets and snapshots go there; default /run/govisor/jail/ID)")
	f.StringVar(&o.jailID, "jail-id", "", "with --jail: the jail's name (cgroup govisor/ID; the uid is derived from it; default vmm-PID)")
	f.StringVar(&o.seccomp, "seccomp", "", "syscall filter: kill (end the VMM at a syscall off its allow-list), log or off (default: kill with --jail, else off)")
	f.StringVar(&o.leaseOwner, "lease-owner", "", "HOST/VM holding the disk leases of --disk ...,lease (a lost lease stops the guest, exit 3)")
	f.StringVar(&o.adoptLeases, "adopt-leases", "", "with --incoming and --lease-owner: NONCE:DISK[,DISK...], the shared disks whose leases the source hands over at the handover with NONCE (its migrate request's lease_nonce)")
}

// ParseMemoryMiB parses --memory (512M, 2G; a plain number is MiB).
func ParseMemoryMiB(s string) (uint64, error) {
	n, err := api.ParseMemoryMiB(s)
	if err != nil {
		return 0, fmt.Errorf("--memory %w", err)
	}
	return n, nil
}

// runFlagNames names config fields as govisor run's flags, for messages.
var runFlagNames = map[string]string{
	"kernel": "--kernel", "firmware": "--firmware", "firmwareImage": "--firmware-image", "firmwareVars": "--firmware-vars", "uuid": "--uuid", "initrd": "--initrd", "cmdline": "--cmdline", "cpus": "--cpus", "memoryMiB": "--memory",
	"boot": "--boot", "guestDecompress": "--guest-decompress", "onReboot": "--on-reboot", "cpuTemplate": "--cpu-template", "cpuFeatures": "--cpu-features",
	"debugExit": "--debug-exit", "verbose": "--verbose", "rng": "--rng", "balloon": "--balloon",
	"apiSock": "--api-sock", "consoleSock": "--console-sock", "restore": "--restore", "incoming": "--incoming",
	"tls": "--tls-*", "tls.cert": "--tls-cert", "tls.key": "--tls-key", "tls.ca": "--tls-ca",
	"vsock": "--vsock", "vsock.cid": "--vsock cid", "vsock.uds": "--vsock uds",
	"fenceTTLMS": "--fence-ttl", "fenceDeadlineMonoNS": "--fence-deadline-mono", "leaseOwner": "--lease-owner", "adoptLeases": "--adopt-leases",
	"seccomp": "--seccomp", "jail": "--jail", "jail.id": "--jail-id", "jail.dir": "--jail-dir", "jail.uid": "--jail-id",
}

// flagName names a config field as the flag that sets it: disks[1].queues
// is "--disk #2 queues".
func flagName(field string) string {
	if f, ok := runFlagNames[field]; ok {
		return f
	}
	for list, flag := range map[string]string{"disks": "--disk", "nets": "--net"} {
		var i int
		var rest string
		if n, _ := fmt.Sscanf(field, list+"[%d]%s", &i, &rest); n == 2 {
			return fmt.Sprintf("%s #%d %s", flag, i+1, strings.TrimPrefix(rest, "."))
		}
	}
	return field
}

// vmmConfig builds the VMM's config from the flags, or loads it from
// --config, and says how messages name its fields.
func (o *runOptions) vmmConfig(flags *pflag.FlagSet) (vmmconfig.Config, vmmconfig.Names, error) {
	if o.config != "" {
		var others []string
		flags.Visit(func(f *pflag.Flag) {
			if f.Name != "config" {
				others = append(others, "--"+f.Name)
			}
		})
		if len(others) > 0 {
			return vmmconfig.Config{}, nil, fmt.Errorf("--config and %s exclude each other: %s says what the VM is (set those there), or leave out --config",
				strings.Join(others, ", "), o.config)
		}
		cfg, err := vmmconfig.Load(o.config)
		return cfg, nil, err
	}
	var err error
	cfg := vmmconfig.Config{
		Kernel: o.kernel, Firmware: o.firmware, FirmwareImage: o.firmwareImage, FirmwareVars: o.firmwareVars, UUID: o.uuid, Initrd: o.initrd, Cmdline: o.cmdline, Boot: o.boot, GuestDecompress: o.guestDecompress,
		OnReboot: o.onReboot, CPUTemplate: o.template, CPUFeatures: o.cpuFeatures, DebugExit: o.debugExit, Verbose: o.verbose,
		RNG: o.rng, Balloon: o.balloon, APISock: o.apiSock, ConsoleSock: o.consoleSock, Restore: o.restore, Incoming: o.incoming,
		FenceTTLMS: int(o.fenceTTL / time.Millisecond), FenceDeadlineMonoNS: o.fenceDeadline, LeaseOwner: o.leaseOwner, Seccomp: o.seccomp,
	}
	if o.adoptLeases != "" {
		if cfg.AdoptLeases, err = parseAdoptLeases(o.adoptLeases); err != nil {
			return cfg, nil, err
		}
	}
	if o.jail {
		cfg.Jail = &vmmconfig.Jail{ID: o.jailID, Dir: o.jailDir}
		if cfg.Jail.ID == "" {
			cfg.Jail.ID = fmt.Sprintf("vmm-%d", os.Getpid())
		}
		if cfg.Jail.Dir == "" {
			cfg.Jail.Dir = "/run/govisor/jail/" + cfg.Jail.ID
		}
		if cfg.Jail.Dir, err = filepath.Abs(cfg.Jail.Dir); err != nil {
			return cfg, nil, err
		}
		if cfg.Seccomp == "" {
			cfg.Seccomp = "kill"
		}
	} else if o.jailDir != "" || o.jailID != "" {
		return cfg, nil, fmt.Errorf("--jail-dir and --jail-id go with --jail")
	}
	// Left out, --cpus means 1 vCPU on boot and the source's count on an
	// incoming migration: the config's 0.
	if flags.Changed("cpus") {
		if o.cpus < 1 || o.cpus > vm.MaxCPUs {
			return cfg, nil, fmt.Errorf("--cpus %d: give 1 to %d", o.cpus, vm.MaxCPUs)
		}
		cfg.CPUs = o.cpus
	}
	if cfg.MemoryMiB, err = ParseMemoryMiB(o.memory); err != nil {
		return cfg, nil, err
	}
	for _, s := range o.disks {
		d, err := ParseDisk(s)
		if err != nil {
			return cfg, nil, err
		}
		cfg.Disks = append(cfg.Disks, d)
	}
	for _, s := range o.nets {
		n, err := ParseNet(s)
		if err != nil {
			return cfg, nil, err
		}
		cfg.Nets = append(cfg.Nets, n)
	}
	if o.vsock != "" {
		if cfg.Vsock, err = ParseVsock(o.vsock); err != nil {
			return cfg, nil, err
		}
	}
	if o.tlsCert != "" || o.tlsKey != "" || o.tlsCA != "" {
		cfg.TLS = &vmmconfig.TLS{Cert: o.tlsCert, Key: o.tlsKey, CA: o.tlsCA}
	}
	return cfg, flagName, nil
}

// prepare makes the VMM of the flags (or of --config): its config
// checked and its files read.
// A jailed VMM is checked here too, so that a bad config fails before
// any jail is made; it runs in the jail, from its config.
func (o *runOptions) prepare(flags *pflag.FlagSet) (*vmm.VMM, vmmconfig.Config, error) {
	cfg, names, err := o.vmmConfig(flags)
	if err != nil {
		return nil, cfg, &ExitError{Code: 2, Err: err}
	}
	v, err := vmm.New(cfg, vmm.Options{Names: names})
	return v, cfg, err // a *vmm.ExitError is the CLI's ExitError
}

// runVMM runs the VMM with the guest's console on this process's stdin
// and stdout.
func runVMM(v *vmm.VMM) error {
	stdout := newConsoleWriter(os.Stdout)
	defer stdout.Close()
	con, err := attachConsole(os.Stdin)
	if err != nil {
		return err
	}
	defer con.restore()
	return v.Run(terminal{consoleWriter: stdout, in: con})
}

// parseAdoptLeases parses --adopt-leases NONCE:DISK[,DISK...].
func parseAdoptLeases(v string) (*vmmconfig.AdoptLeases, error) {
	n, disks, ok := strings.Cut(v, ":")
	nonce, err := strconv.ParseUint(n, 10, 64)
	if !ok || err != nil || nonce == 0 || disks == "" {
		return nil, fmt.Errorf("--adopt-leases %q: give NONCE:DISK[,DISK...] with a non-zero decimal NONCE", v)
	}
	return &vmmconfig.AdoptLeases{Nonce: nonce, Disks: strings.Split(disks, ",")}, nil
}
