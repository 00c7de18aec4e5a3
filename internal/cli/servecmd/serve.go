// Package servecmd is `govisor serve`, the host agent's command. It lives
// in the govisor-agent binary, which embeds etcd, so that the govisor binary
// every VMM process runs stays small and starts fast.
package servecmd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/agent"
	"github.com/govisor/govisor/internal/cli"
)

type serveOptions struct {
	cfg       agent.Config
	endpoints string
	onExit    string
	logFormat string
	logLevel  string
}

// NewServeCmd returns the `serve` command.
func NewServeCmd() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve [--state-dir DIR] [--socket PATH] [--listen ADDR --tls-cert F --tls-key F --token-file F]",
		Short: "Run the host agent: VM state in etcd, the REST API, one VMM process per VM",
		Long: `Run the govisor host agent. It keeps VM definitions and state in etcd (an
embedded single-member etcd in --state-dir unless --etcd-endpoints names an
external cluster), serves the REST API on a Unix socket (mode 0600) and,
with --listen, on TCP with TLS and bearer tokens, and runs each VM of this
host as its own 'govisor run' process, restarting VMs by their restart
policy. VMM processes outlive the agent: a restarted agent adopts them.

On SIGTERM or SIGINT the agent stops its VMs unless --on-exit=keep: each
guest gets an ACPI power-button press and its stopTimeout (default
--stop-timeout) to power off, then its VMM gets SIGTERM, and SIGKILL 5 s
later. 'govisor vm stop' does the same for one VM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServe(o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.cfg.StateDir, "state-dir", "/var/lib/govisor", "agent state: embedded etcd data, VM console logs")
	f.StringVar(&o.cfg.Socket, "socket", cli.EnvOr("GOVISOR_SOCKET", client.DefaultSocket), "Unix socket of the API (mode 0600); empty for none")
	f.StringVar(&o.cfg.Listen, "listen", "", "also serve the API on this TCP address (needs --tls-cert, --tls-key, --token-file)")
	f.StringVar(&o.cfg.TLSCert, "tls-cert", "", "PEM certificate for --listen")
	f.StringVar(&o.cfg.TLSKey, "tls-key", "", "PEM private key for --listen")
	f.StringVar(&o.cfg.TokenFile, "token-file", "", "bearer tokens accepted on --listen, one a line")
	f.StringVar(&o.endpoints, "etcd-endpoints", "", "external etcd cluster, comma-separated (default: embedded etcd)")
	f.StringVar(&o.cfg.HostName, "host-name", "", "this host's name (default: the system host name)")
	f.DurationVar(&o.cfg.StopTimeout, "stop-timeout", 10*time.Second, "how long a stop waits for a guest to power off after the ACPI power button (a VM's stopTimeout overrides it)")
	f.StringVar(&o.cfg.MigrationHost, "migration-host", "", "address VMMs receiving a live migration listen on (default: the host of --listen, else 127.0.0.1)")
	f.StringVar(&o.cfg.PeerCA, "peer-ca", "", "PEM CA certificate that signed the other agents' TLS certificates (for live migration)")
	f.DurationVar(&o.cfg.UsageEvery, "usage-interval", 10*time.Second, "how often the agent samples VM and host utilization for govisor report")
	f.DurationVar(&o.cfg.UsageKeep, "usage-retention", 7*24*time.Hour, "how long utilization samples are kept")
	f.StringVar(&o.onExit, "on-exit", "stop", "what SIGTERM does to the VMs: stop them, or keep them running for the next agent")
	f.StringVar(&o.logFormat, "log-format", "json", "log format on stderr: json or text")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func runServe(o *serveOptions) error {
	if o.onExit != "stop" && o.onExit != "keep" {
		return &cli.ExitError{Code: 2, Err: fmt.Errorf("--on-exit %q: use stop or keep", o.onExit)}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return &cli.ExitError{Code: 2, Err: fmt.Errorf("--log-level %q: use debug, info, warn or error", o.logLevel)}
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "json":
		o.cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, hopts))
	case "text":
		o.cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, hopts))
	default:
		return &cli.ExitError{Code: 2, Err: fmt.Errorf("--log-format %q: use json or text", o.logFormat)}
	}
	for _, e := range strings.Split(o.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			o.cfg.EtcdEndpoints = append(o.cfg.EtcdEndpoints, e)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	a, err := agent.New(context.Background(), o.cfg)
	if err != nil {
		return err
	}
	sig := <-sigs
	o.cfg.Logger.Info("agent stopping", "signal", sig.String(), "on-exit", o.onExit)
	if o.onExit == "keep" {
		return a.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.cfg.StopTimeout+10*time.Second)
	defer cancel()
	return a.Shutdown(ctx)
}
