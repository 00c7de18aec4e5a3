package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/vmmapi"
)

func newCtlCmd() *cobra.Command {
	var sock string
	var mf migrateFlags
	cmd := &cobra.Command{
		Use:   "ctl --api-sock PATH info|stats|pause|resume|shutdown|stop|balloon MIB|snapshot DIR|migrate HOST:PORT|migration|migrate-cancel|disks|disk-attach PATH|disk-detach vdX|fence [TTL]",
		Short: "Control a running VMM through its API socket (govisor run --api-sock)",
		Long: `Control a running VMM through its API socket (govisor run --api-sock).

migrate HOST:PORT live-migrates the VM to a VMM started with govisor run
--incoming HOST:PORT, printing progress to stderr while it runs; Ctrl-C
cancels it and the VM keeps running here. migrate unix:PATH migrates to a
VMM on this host started with --incoming unix:PATH; open vsock connections
then stay open (over TCP the guest sees them reset). migration prints the state of the
latest migration, migrate-cancel cancels a running one. fence TTL feeds the
VMM's self-fencing watchdog (the guest stops, and the VMM exits 3, unless it
is fed again within TTL; 0 disarms it); fence alone prints its state.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sock == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("--api-sock is required: the socket given to govisor run --api-sock")}
			}
			// No deadline: a migration or snapshot takes as long as it takes.
			ctx, c := context.Background(), vmmapi.NewClient(sock)
			var info vmmapi.Info
			var err error
			switch args[0] {
			case "disks", "disk-attach", "disk-detach":
				return ctlDisk(ctx, c, sock, args)
			case "info":
				info, err = c.Info(ctx)
			case "pause":
				info, err = c.Pause(ctx)
			case "resume":
				info, err = c.Resume(ctx)
			case "stop":
				info, err = c.Stop(ctx)
			case "shutdown":
				info, err = c.Shutdown(ctx)
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
				return ctlMigrate(ctx, c, req, os.Stdout, progress)
			case "migration", "migrate-cancel":
				if args[0] == "migrate-cancel" {
					if err := c.CancelMigrate(ctx); err != nil {
						return err
					}
				}
				p, err := c.MigrateProgress(ctx)
				if err != nil {
					return err
				}
				return printJSON(p)
			case "fence":
				// fence: the watchdog's state; fence TTL: feed it (0 disarms).
				var st vmmapi.FenceStatus
				if len(args) == 1 {
					st, err = c.FenceStatus(ctx)
				} else {
					ttl, perr := time.ParseDuration(args[1])
					if perr != nil && args[1] != "0" {
						return &ExitError{Code: 2, Err: fmt.Errorf("fence %q: give a duration (5s, 1500ms; 0 disarms)", args[1])}
					}
					st, err = c.Fence(ctx, ttl)
				}
				if err != nil {
					return err
				}
				return printJSON(st)
			case "stats":
				st, err := c.Stats(ctx)
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
				info, err = c.SetBalloon(ctx, mib)
			case "snapshot":
				if len(args) != 2 {
					return &ExitError{Code: 2, Err: fmt.Errorf("snapshot needs the folder to create: govisor ctl --api-sock %s snapshot DIR", sock)}
				}
				info, err = c.Snapshot(ctx, args[1])
			default:
				return &ExitError{Code: 2, Err: fmt.Errorf("unknown action %q: use info, stats, pause, resume, shutdown, stop, balloon MIB, snapshot DIR, migrate HOST:PORT, migration, migrate-cancel or fence [TTL]", args[0])}
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
