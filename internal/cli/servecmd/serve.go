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

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/agent"
	"github.com/govisor/govisor/internal/cli/cmdutil"
	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/store"
)

type serveOptions struct {
	cfg       agent.Config
	endpoints string
	member    store.Member // --etcd-name, --etcd-peer-url, --etcd-client-url, --etcd-initial-cluster
	etcdTLS   store.TLS    // --etcd-ca, --etcd-cert, --etcd-key
	onExit    string
	join      string // --join: the URL of an agent of the cluster to join
	logFormat string
	logLevel  string
	labels    []string // --label KEY=VALUE
}

// NewServeCmd returns the `serve` command.
func NewServeCmd() *cobra.Command { return newServeCmd(&serveOptions{}) }

// newServeCmd is the command with its flags bound to o.
func newServeCmd(o *serveOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve [--state-dir DIR] [--socket PATH] [--listen ADDR --tls-cert F --tls-key F --token-file F] [--etcd-endpoints URLS [--etcd-initial-cluster MEMBERS]]",
		Short: "Run the host agent: VM state in etcd, the REST API, one VMM process per VM",
		Long: `Run the govisor host agent. It keeps VM definitions and state in etcd (an
embedded single-member etcd in --state-dir unless --etcd-endpoints names an
external cluster, or --etcd-initial-cluster makes the embedded etcd one
member of a multi-member cluster), serves the REST API on a Unix socket
(mode 0600) and, with --listen, on TCP with TLS and bearer tokens, and runs
each VM of this host as its own 'govisor run' process, restarting VMs by
their restart policy. VMM processes outlive the agent: a restarted agent
adopts them.

On SIGTERM or SIGINT the agent stops its VMs unless --on-exit=keep: each
guest gets an ACPI power-button press and its stopTimeout (default
--stop-timeout) to power off, then its VMM gets SIGTERM, and SIGKILL 5 s
later. 'govisor vm stop' does the same for one VM.

Embedded etcd cluster: on each of 3 (or 5) hosts, give the same
--etcd-initial-cluster (every member's name and peer URL) and --etcd-endpoints
(every member's client URL, one each), and this host's --etcd-name (default:
--host-name). The member listens on its peer URL from --etcd-initial-cluster
and on --etcd-client-url (default: the --etcd-endpoints entry with the peer
URL's IP), not on loopback, and keeps its data in --state-dir/etcd. Start-up
waits up to --etcd-timeout for a quorum (2 of 3 members). Restarted with its
data, a member rejoins its cluster. Further hosts give only --etcd-endpoints:

  govisor-agent serve --host-name h1 --etcd-initial-cluster \
    h1=http://10.0.0.1:2380,h2=http://10.0.0.2:2380,h3=http://10.0.0.3:2380 \
    --etcd-endpoints http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379

etcd TLS: with --etcd-ca, --etcd-cert and --etcd-key, the embedded member
serves clients and peers over TLS only to holders of a certificate the CA
signed, and the agent presents --etcd-cert to etcd (embedded or external);
every etcd URL is then https://.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServe(o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.cfg.StateDir, "state-dir", "/var/lib/govisor", "agent state: embedded etcd data, VM console logs")
	f.StringVar(&o.cfg.Socket, "socket", cmdutil.EnvOr("GOVISOR_SOCKET", client.DefaultSocket), "Unix socket of the API (mode 0600); empty for none")
	f.StringVar(&o.cfg.Listen, "listen", "", "also serve the API on this TCP address (needs --tls-cert, --tls-key, --token-file)")
	f.StringVar(&o.cfg.TLSCert, "tls-cert", "", "PEM certificate for --listen")
	f.StringVar(&o.cfg.TLSKey, "tls-key", "", "PEM private key for --listen")
	f.StringVar(&o.cfg.TokenFile, "token-file", "", "bearer tokens accepted on --listen, one a line: TOKEN [role=admin|operator|viewer] [name=NAME] (govisor token create)")
	f.Float64Var(&o.cfg.RateLimit, "rate-limit", 50, "requests a second each --listen token may make on average (0: no limit)")
	f.IntVar(&o.cfg.RateBurst, "rate-burst", 100, "requests each --listen token may make at once above --rate-limit")
	f.DurationVar(&o.cfg.SessionTTL, "session-ttl", 12*time.Hour, "how long a login to the web console (https://LISTEN/ui/) lasts")
	f.StringVar(&o.endpoints, "etcd-endpoints", "", "client URLs of an external etcd cluster, or with --etcd-initial-cluster of every member, comma-separated (default: embedded single-member etcd)")
	f.StringVar(&o.member.InitialCluster, "etcd-initial-cluster", "", "run the embedded etcd as a member of this cluster: NAME=http://IP:2380,... with every member's peer URL (needs --etcd-endpoints)")
	f.StringVar(&o.member.Name, "etcd-name", "", "this host's member name in --etcd-initial-cluster (default: --host-name, else the system host name)")
	f.DurationVar(&o.member.ElectionTimeout, "etcd-election-timeout", 0, "the embedded etcd member's election timeout, the same on every member (default etcd's 1s; heartbeats every tenth); bounds HA detection when the etcd leader's host dies")
	f.StringVar(&o.member.PeerURL, "etcd-peer-url", "", "this member's peer URL, http://IP:PORT, listened on and advertised (default: its entry in --etcd-initial-cluster, which it must match)")
	f.StringVar(&o.member.ClientURL, "etcd-client-url", "", "this member's client URL, http://IP:PORT, listened on and advertised; one of --etcd-endpoints (default: the one with the peer URL's IP)")
	f.StringVar(&o.etcdTLS.CA, "etcd-ca", "", "etcd over TLS with client certificates: PEM CA certificate that signed every member's and agent's etcd certificate (every etcd URL is then https://)")
	f.StringVar(&o.etcdTLS.Cert, "etcd-cert", "", "PEM certificate this host's embedded etcd member serves clients and peers with and the agent presents to etcd (server and client use; the host's etcd IPs as SANs)")
	f.StringVar(&o.etcdTLS.Key, "etcd-key", "", "PEM private key of --etcd-cert")
	f.DurationVar(&o.cfg.EtcdTimeout, "etcd-timeout", 0, "how long start-up waits for etcd (default 20s; 2m with --etcd-initial-cluster, where it waits for a quorum of members)")
	f.StringVar(&o.join, "join", "", "join the cluster of the agent at this URL (https://HOST:PORT of any host's --listen): this host's embedded etcd becomes a member (needs --etcd-peer-url and --etcd-client-url) while the cluster has fewer than 3, else it uses theirs; with --peer-ca and the first token of --token-file")
	f.StringVar(&o.cfg.HostName, "host-name", "", "this host's name (default: the system host name)")
	f.BoolVar(&o.cfg.NoJail, "no-jail", false, "start the VMMs unjailed, as root with every syscall (default: each VMM in its own jail: namespaces, its own files only, an unprivileged uid, a cgroup, a seccomp filter)")
	f.StringVar(&o.cfg.Seccomp, "seccomp", "kill", "the jailed VMMs' syscall filter: kill (end a VMM at a syscall off its allow-list), log or off")
	f.DurationVar(&o.cfg.StopTimeout, "stop-timeout", 10*time.Second, "how long a stop waits for a guest to power off after the ACPI power button (a VM's stopTimeout overrides it)")
	f.StringVar(&o.cfg.MigrationHost, "migration-host", "", "address VMMs receiving a live migration listen on (default: the host of --listen, else 127.0.0.1)")
	f.StringVar(&o.cfg.PeerCA, "peer-ca", "", "PEM CA certificate that signed the other agents' TLS certificates (for live migration)")
	f.StringArrayVar(&o.labels, "label", nil, "a label of this host, KEY=VALUE (repeat the flag for more), matched by VMs' hostRules (\"must zone=a\")")
	f.DurationVar(&o.cfg.HostLeaseTTL, "host-lease-ttl", agent.DefaultHostLeaseTTL, "TTL of this host's etcd lease: a host silent this long counts as dead and its HA VMs restart on other hosts (whole seconds, at least 2s; the same on every host)")
	f.DurationVar(&o.cfg.UsageEvery, "usage-interval", 10*time.Second, "how often the agent samples VM and host utilization for govisor report")
	f.DurationVar(&o.cfg.UsageKeep, "usage-retention", 7*24*time.Hour, "how long utilization samples are kept")
	f.StringVar(&o.onExit, "on-exit", "stop", "what SIGTERM does to the VMs: stop them, or keep them running for the next agent")
	f.StringVar(&o.logFormat, "log-format", "json", "log format on stderr: json or text")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func runServe(o *serveOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	if err := o.joinCluster(); err != nil {
		return err
	}
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

// check validates the flags and completes o.cfg, before anything starts.
func (o *serveOptions) check() error {
	if o.onExit != "stop" && o.onExit != "keep" {
		return &cmdutil.ExitError{Code: 2, Err: fmt.Errorf("--on-exit %q: use stop or keep", o.onExit)}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return &cmdutil.ExitError{Code: 2, Err: fmt.Errorf("--log-level %q: use debug, info, warn or error", o.logLevel)}
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "json":
		o.cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, hopts))
	case "text":
		o.cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, hopts))
	default:
		return &cmdutil.ExitError{Code: 2, Err: fmt.Errorf("--log-format %q: use json or text", o.logFormat)}
	}
	for _, e := range strings.Split(o.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			o.cfg.EtcdEndpoints = append(o.cfg.EtcdEndpoints, e)
		}
	}
	if o.cfg.HostLeaseTTL < 2*time.Second || o.cfg.HostLeaseTTL%time.Second != 0 {
		return &cmdutil.ExitError{Code: 2, Err: fmt.Errorf("--host-lease-ttl %v: give whole seconds, at least 2s (etcd leases count in seconds)", o.cfg.HostLeaseTTL)}
	}
	for _, l := range o.labels {
		k, v, ok := strings.Cut(l, "=")
		if _, err := placement.ParseSelector(l); !ok || k == "" || err != nil {
			return &cmdutil.ExitError{Code: 2, Err: fmt.Errorf("--label %q: write KEY=VALUE (letters, digits, '.', '_', '-'; keys also '/')", l)}
		}
		if o.cfg.Labels == nil {
			o.cfg.Labels = map[string]string{}
		}
		o.cfg.Labels[k] = v
	}
	if err := o.checkMember(); err != nil {
		return &cmdutil.ExitError{Code: 2, Err: err}
	}
	if o.etcdTLS != (store.TLS{}) {
		if err := o.etcdTLS.Check(); err != nil {
			return &cmdutil.ExitError{Code: 2, Err: err}
		}
		o.cfg.EtcdTLS = &o.etcdTLS
	}
	return nil
}

// checkMember validates the embedded etcd member flags into o.cfg.EtcdMember.
func (o *serveOptions) checkMember() error {
	if o.cfg.EtcdTimeout < 0 {
		return fmt.Errorf("--etcd-timeout %v: give a positive duration, e.g. 2m", o.cfg.EtcdTimeout)
	}
	m := o.member
	if o.join != "" {
		switch {
		case m.InitialCluster != "" || len(o.cfg.EtcdEndpoints) > 0:
			return fmt.Errorf("--join: the cluster gives the etcd members and endpoints: leave out --etcd-initial-cluster and --etcd-endpoints")
		case m.PeerURL == "" || m.ClientURL == "":
			return fmt.Errorf("--join: give this host's etcd URLs, --etcd-peer-url http://IP:2380 and --etcd-client-url http://IP:2379 (IP: an address the other hosts reach), in case it becomes a member")
		}
		return nil // joinCluster completes the member
	}
	if strings.TrimSpace(m.InitialCluster) == "" {
		election := ""
		if m.ElectionTimeout != 0 {
			election = m.ElectionTimeout.String()
		}
		for _, f := range []struct{ flag, v string }{{"etcd-name", m.Name}, {"etcd-peer-url", m.PeerURL}, {"etcd-client-url", m.ClientURL}, {"etcd-election-timeout", election}} {
			if f.v != "" {
				return fmt.Errorf("--%s: only used with --etcd-initial-cluster: add --etcd-initial-cluster NAME=http://IP:2380,... listing every member", f.flag)
			}
		}
		return nil
	}
	if err := o.memberName(&m); err != nil {
		return err
	}
	m, err := m.Check(o.cfg.EtcdEndpoints)
	if err != nil {
		return err
	}
	o.cfg.EtcdMember = &m
	return nil
}

// memberName fills in m's name: --etcd-name, else the host's name.
func (o *serveOptions) memberName(m *store.Member) error {
	if m.Name == "" {
		m.Name = o.cfg.HostName
	}
	if m.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--etcd-name: not given, and the host name is unknown (%w): give --etcd-name", err)
		}
		m.Name = h
	}
	return nil
}

// joinCluster asks the agent of --join to let this host join, and sets
// up its etcd from the answer: a member of the cluster (a learner that
// the store promotes), or a client of the cluster's members.
func (o *serveOptions) joinCluster() error {
	if o.join == "" {
		return nil
	}
	m := o.member
	if err := o.memberName(&m); err != nil {
		return &cmdutil.ExitError{Code: 2, Err: err}
	}
	info, err := agent.Join(context.Background(), o.cfg, o.join, api.JoinRequest{Name: m.Name, PeerURL: m.PeerURL})
	if err != nil {
		return err
	}
	if !info.Member {
		o.cfg.EtcdEndpoints = info.Endpoints
		o.cfg.Logger.Info("joined the cluster as a client of its etcd", "endpoints", info.Endpoints)
		return nil
	}
	m.InitialCluster, m.Join = info.InitialCluster, true
	o.cfg.EtcdEndpoints = append(info.Endpoints, m.ClientURL)
	checked, err := m.Check(o.cfg.EtcdEndpoints)
	if err != nil {
		return fmt.Errorf("--join: the cluster's answer does not fit this host's etcd flags: %w", err)
	}
	o.cfg.EtcdMember = &checked
	o.cfg.Logger.Info("joining the cluster as an etcd member", "initial-cluster", info.InitialCluster)
	return nil
}
