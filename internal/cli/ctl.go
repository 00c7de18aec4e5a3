package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/migration"
	"github.com/govisor/govisor/internal/vm"
	"github.com/govisor/govisor/internal/vmmapi"
)

// machineCtl serves a `govisor run` process's control API; it follows the
// current machine across guest reboots.
type machineCtl struct {
	mu   sync.Mutex
	m    *vm.Machine
	seen bool // a machine has existed (before: "starting", after: "stopped")

	mig   migration.Tracker // outgoing migrations
	migTo string            // the latest migration's destination
}

func (c *machineCtl) set(m *vm.Machine) {
	c.mu.Lock()
	c.m = m
	c.seen = c.seen || m != nil
	c.mu.Unlock()
}

// startWait is how long a request waits for the machine while the VMM
// builds it (the API socket exists from the VMM's start, and between a
// guest's reboots).
const startWait = 10 * time.Second

// errStarting answers requests that came before the machine exists.
var errStarting = errors.New("the VM is still starting (booting, restoring or waiting for a migration): try again")

// get returns the machine, waiting for it while the VMM builds it.
func (c *machineCtl) get() (*vm.Machine, error) {
	for deadline := time.Now().Add(startWait); ; time.Sleep(5 * time.Millisecond) {
		c.mu.Lock()
		m, seen := c.m, c.seen
		c.mu.Unlock()
		switch {
		case m != nil:
			return m, nil
		case time.Now().After(deadline) && !seen:
			return nil, errStarting
		case time.Now().After(deadline):
			return nil, vm.ErrStopped
		}
	}
}

func (c *machineCtl) Pause() error {
	m, err := c.get()
	if err != nil {
		return err
	}
	return m.Pause()
}

func (c *machineCtl) Resume() error {
	m, err := c.get()
	if err != nil {
		return err
	}
	m.Resume()
	return nil
}

func (c *machineCtl) Snapshot(dir string) error {
	m, err := c.get()
	if err != nil {
		return err
	}
	return m.Snapshot(dir)
}

func (c *machineCtl) Stop() error {
	m, err := c.get()
	if err != nil {
		return err
	}
	m.Stop(vm.Exit{Reason: vm.ExitHost, Detail: "stopped through the API"})
	return nil
}

func (c *machineCtl) Shutdown() error {
	m, err := c.get()
	if err != nil {
		return err
	}
	m.PowerButton()
	return nil
}

func (c *machineCtl) SetBalloon(mib uint64) error {
	m, err := c.get()
	if err != nil {
		return err
	}
	b := m.Balloon()
	if b == nil {
		return fmt.Errorf("this VM has no balloon: start it with --balloon")
	}
	if mib >= m.Config().MemoryMiB {
		return fmt.Errorf("balloon of %d MiB: the VM has only %d MiB", mib, m.Config().MemoryMiB)
	}
	b.SetTarget(uint32(mib << 20 / 4096))
	return nil
}

func (c *machineCtl) Info() vmmapi.Info {
	c.mu.Lock()
	m := c.m
	c.mu.Unlock()
	if m == nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.seen {
			return vmmapi.Info{State: "starting"} // booting, restoring or waiting for a migration
		}
		return vmmapi.Info{State: "stopped"}
	}
	cfg := m.Config()
	st := "running"
	if m.Paused() {
		st = "paused"
	}
	info := vmmapi.Info{State: st, CPUs: cfg.CPUs, MemoryMiB: cfg.MemoryMiB, KVM: string(m.Flavor()),
		Template: m.Template(), Exits: m.Exits(), Emulated: m.EmulatedInstructions()}
	if b := m.Balloon(); b != nil {
		s := b.Stats()
		info.Balloon = &vmmapi.Balloon{TargetMiB: uint64(b.Target()) * 4096 >> 20, ActualMiB: uint64(b.Actual()) * 4096 >> 20,
			GuestFreeMiB: s.FreeMemory >> 20, GuestAvailMiB: s.AvailableMemory >> 20}
	}
	return info
}

func newCtlCmd() *cobra.Command {
	var sock string
	var mf migrateFlags
	cmd := &cobra.Command{
		Use:   "ctl --api-sock PATH info|stats|pause|resume|shutdown|stop|balloon MIB|snapshot DIR|migrate HOST:PORT|migration|migrate-cancel|disks|disk-attach PATH|disk-detach vdX",
		Short: "Control a running VMM through its API socket (govisor run --api-sock)",
		Long: `Control a running VMM through its API socket (govisor run --api-sock).

migrate HOST:PORT live-migrates the VM to a VMM started with govisor run
--incoming HOST:PORT, printing progress to stderr while it runs; Ctrl-C
cancels it and the VM keeps running here. migrate unix:PATH migrates to a
VMM on this host started with --incoming unix:PATH; open vsock connections
then stay open (over TCP the guest sees them reset). migration prints the state of the
latest migration, migrate-cancel cancels a running one.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sock == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("--api-sock is required: the socket given to govisor run --api-sock")}
			}
			c := vmmapi.NewClient(sock)
			var info vmmapi.Info
			var err error
			switch args[0] {
			case "disks", "disk-attach", "disk-detach":
				return ctlDisk(c, sock, args)
			case "info":
				info, err = c.Info()
			case "pause":
				info, err = c.Pause()
			case "resume":
				info, err = c.Resume()
			case "stop":
				info, err = c.Stop()
			case "shutdown":
				info, err = c.Shutdown()
			case "migrate":
				if len(args) != 2 {
					return &ExitError{Code: 2, Err: fmt.Errorf("migrate needs the destination: govisor ctl --api-sock %s migrate HOST:PORT", sock)}
				}
				req, err := mf.request(args[1])
				if err != nil {
					return &ExitError{Code: 2, Err: err}
				}
				var progress io.Writer = os.Stderr
				if mf.quiet {
					progress = nil
				}
				return ctlMigrate(c, req, os.Stdout, progress)
			case "migration", "migrate-cancel":
				if args[0] == "migrate-cancel" {
					if err := c.CancelMigrate(); err != nil {
						return err
					}
				}
				p, err := c.MigrateProgress()
				if err != nil {
					return err
				}
				return printJSON(p)
			case "stats":
				st, err := c.Stats()
				if err != nil {
					return err
				}
				return printJSON(st)
			case "balloon":
				if len(args) != 2 {
					return &ExitError{Code: 2, Err: fmt.Errorf("balloon needs a size in MiB: govisor ctl --api-sock %s balloon 256", sock)}
				}
				mib, perr := api.ParseMemoryMiB(args[1])
				if perr != nil && args[1] != "0" {
					return &ExitError{Code: 2, Err: fmt.Errorf("balloon %w", perr)}
				}
				info, err = c.SetBalloon(mib)
			case "snapshot":
				if len(args) != 2 {
					return &ExitError{Code: 2, Err: fmt.Errorf("snapshot needs the folder to create: govisor ctl --api-sock %s snapshot DIR", sock)}
				}
				info, err = c.Snapshot(args[1])
			default:
				return &ExitError{Code: 2, Err: fmt.Errorf("unknown action %q: use info, stats, pause, resume, shutdown, stop, balloon MIB, snapshot DIR, migrate HOST:PORT, migration or migrate-cancel", args[0])}
			}
			if err != nil {
				return err
			}
			return printJSON(info)
		},
	}
	f := cmd.Flags()
	f.StringVar(&sock, "api-sock", "", "the VMM's API socket")
	f.IntVar(&mf.maxDowntimeMS, "max-downtime-ms", 300, "migrate: the longest pause the guest may see, in milliseconds")
	f.DurationVar(&mf.maxDowntime, "max-downtime", 0, "migrate: the longest pause the guest may see (e.g. 50ms; overrides --max-downtime-ms)")
	f.StringVar(&mf.bandwidth, "bandwidth", "", "migrate: limit the transfer while the guest runs, bytes per second with K, M or G (100M = 100 MiB/s; default unlimited)")
	f.BoolVar(&mf.autoConverge, "auto-converge", false, "migrate: slow the guest's vCPUs when it dirties memory faster than it can be sent")
	f.BoolVar(&mf.postCopy, "post-copy", false, "migrate: when pre-copy cannot meet --max-downtime, start the VM on the destination at once and fetch the rest of its memory on demand (the VM is lost if the link fails meanwhile)")
	f.BoolVar(&mf.mirrorDisks, "mirror-disks", false, "migrate: copy every disk to the destination's own --disk images (blank, same sizes) when the hosts share no storage")
	f.StringVar(&mf.tlsCert, "tls-cert", "", "migrate: this host's certificate (PEM) for mutual TLS with the destination")
	f.StringVar(&mf.tlsKey, "tls-key", "", "migrate: the private key of --tls-cert")
	f.StringVar(&mf.tlsCA, "tls-ca", "", "migrate: CA bundle (PEM) that signed the destination's certificate")
	f.BoolVarP(&mf.quiet, "quiet", "q", false, "migrate: print no progress lines")
	return cmd
}

// printJSON prints v as indented JSON on stdout.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
