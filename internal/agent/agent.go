// Package agent is the govisor host agent (`govisor serve`): it keeps VM
// definitions and state in etcd (package store), implements the
// operations of package service over the store and this host's node
// (package node: the reconciler of the VMM processes, one `govisor run`
// child per VM), one small service type per resource (services.go),
// serves them as the REST API (package httpapi) on a Unix socket and
// optionally on TCP with TLS and bearer tokens, and samples usage and
// metrics. The Agent itself is the wiring, the live migrations and the
// cluster leader's controllers.
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/audit"
	"github.com/govisor/govisor/internal/cluster/ha"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/disklease"
	"github.com/govisor/govisor/internal/hostcpu"
	"github.com/govisor/govisor/internal/hostmem"
	"github.com/govisor/govisor/internal/node"
)

// Config configures an agent.
type Config struct {
	StateDir      string        // etcd data, agent id, per-VM logs (required)
	Socket        string        // Unix socket of the API (mode 0600); empty: none
	Listen        string        // TCP address of the API; needs TLSCert, TLSKey and TokenFile
	TLSCert       string        // PEM certificate for Listen
	TLSKey        string        // PEM key for Listen
	TokenFile     string        // bearer tokens accepted on TCP, one a line (package apitoken: with roles)
	RateLimit     float64       // requests a second each TCP token may make on average (0: no limit)
	RateBurst     int           // requests a TCP token may make at once (default 2*RateLimit)
	SessionTTL    time.Duration // how long a web console login lasts (default webauth.DefaultTTL)
	EtcdEndpoints []string      // external etcd; empty: embedded etcd in StateDir (with EtcdMember: every member's client URL)
	EtcdMember    *store.Member // run the embedded etcd as this member of a multi-member cluster
	EtcdTimeout   time.Duration // how long start-up waits for etcd (default 20s; with EtcdMember 2m, for a quorum)
	EtcdTLS       *store.TLS    // etcd over TLS with client certificates (the embedded member's and the client's)
	HostName      string        // this host's name in etcd (default: os.Hostname)
	Executable    string        // the govisor binary to run VMMs with (default: os.Executable)
	StopTimeout   time.Duration // how long a stop waits for a guest to power off after the ACPI button, unless its spec says (default 10s)
	ResyncEvery   time.Duration // full reconcile period besides etcd watch events (default 5s)
	// MigrationHost is the address VMMs receiving a live migration listen on
	// (default: the host of Listen, else 127.0.0.1).
	MigrationHost string
	// PeerToken is the bearer token this agent sends to other agents' TCP
	// APIs (default: the first token of TokenFile: a cluster shares them).
	PeerToken string
	// PeerCA is a PEM file of the CA that signed the other agents' TLS
	// certificates (default: the system roots plus TLSCert).
	PeerCA string
	// HostLeaseTTL is the TTL of this host's etcd lease (default 5s): a
	// host silent for that long counts as dead, and its HA VMs restart
	// elsewhere (they stopped themselves before it ran out). It is also
	// how long a dead leader's controllers wait for a successor.
	HostLeaseTTL time.Duration
	// Labels are this host's labels, which VMs' host rules match.
	Labels     map[string]string
	UsageEvery time.Duration // utilization sampling period for reports (default 10s)
	UsageKeep  time.Duration // how long utilization samples are kept (default 7 days)
	Logger     *slog.Logger  // default: discard
	// NoJail starts the VMMs unjailed, with the agent's privileges. By
	// default every VMM is jailed (package jail) and filtered (Seccomp).
	NoJail bool
	// Seccomp is the jailed VMMs' syscall filter: kill (the default), log
	// or off.
	Seccomp string
}

// Agent is a running host agent.
type Agent struct {
	cfg Config
	// vmAccess holds the store and this host's node (the VMM processes,
	// the reconciler), which the services share.
	vmAccess
	// hostLease is this host's registration; its ConfirmedUntil bounds how
	// long a self-fencing VMM may run without news from etcd.
	hostLease *store.HostLease
	id        string
	log       *slog.Logger
	hostMiB   uint64
	started   time.Time
	ctx       context.Context
	cancel    context.CancelFunc
	evCtx     context.Context // ends event streams when the API closes
	evStop    context.CancelFunc
	loopWG    sync.WaitGroup
	http      []*http.Server
	audit     *audit.Log // every change made through the API (state directory, audit.FileName)
	lock      *os.File   // flock on the state directory: one agent per directory
	addrs     []string
	mig       *migrator // carries out the live migrations recorded for this host
	// leaseObs is what this agent saw of the HA VMs' disk leases, which
	// its HA controller passes on when it leads (ha.ObserveLeases).
	leaseObs *disklease.Observer
	peers    *peerClients // other hosts' agents (consoles, migrations)
	// The services, per resource (services.go): what the API, the
	// controllers and the console call.
	vms   *vmService
	disks *diskService
	snaps *snapshotService
	nets  *networkService
	pools *poolService
	hosts *hostService
	// haRestarts counts the HA restarts this agent's controller made, by
	// the dead host; leading is 1 while this agent leads the cluster.
	haRestarts *prometheus.CounterVec
	leading    prometheus.Gauge
	migrations *prometheus.CounterVec // by the controller that asked: maintenance
	// hostStates and imbalance are the cluster as its leader last saw
	// it: hosts by state, and the spread of the ready hosts' loads.
	hostStates *prometheus.GaugeVec
	imbalance  prometheus.Gauge
	loads      loadMeter // this host's load, from the usage samples
}

// New opens the store, adopts this host's running VMMs, starts the
// reconciler and serves the API. Stop it with Shutdown or Close.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("agent: a state directory is required")
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.ResyncEvery == 0 {
		cfg.ResyncEvery = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HostLeaseTTL == 0 {
		cfg.HostLeaseTTL = DefaultHostLeaseTTL
	}
	if cfg.HostName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("agent: host name: %w", err)
		}
		cfg.HostName = h
	}
	if cfg.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("agent: find the govisor binary: %w", err)
		}
		// VMMs run the lean govisor binary installed next to govisor-agent
		// (a binary that has the run command itself is the fallback).
		cfg.Executable = exe
		if sibling := filepath.Join(filepath.Dir(exe), "govisor"); sibling != exe {
			if _, err := os.Stat(sibling); err == nil {
				cfg.Executable = sibling
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "vms"), 0o700); err != nil {
		return nil, fmt.Errorf("agent: state dir: %w", err)
	}
	lock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	id, err := loadAgentID(filepath.Join(cfg.StateDir, "agent-id"))
	if err != nil {
		lock.Close()
		return nil, err
	}
	st, err := store.Open(ctx, store.Config{DataDir: cfg.StateDir, Endpoints: cfg.EtcdEndpoints, Member: cfg.EtcdMember, Timeout: cfg.EtcdTimeout, TLS: cfg.EtcdTLS})
	if err != nil {
		lock.Close()
		return nil, err
	}
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &Agent{
		cfg: cfg, id: id, lock: lock, log: cfg.Logger, hostMiB: hostmem.TotalMiB(), started: time.Now().UTC(),
		ctx: actx, cancel: cancel,
		haRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "govisor_ha_restarts_total",
			Help: "HA VMs this agent, as the cluster's leader, restarted on another host after their host died."}, []string{"from", "to"}),
		leading: prometheus.NewGauge(prometheus.GaugeOpts{Name: "govisor_cluster_leader",
			Help: "1 while this agent leads the cluster (runs its controllers)."}),
		hostStates: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "govisor_cluster_hosts",
			Help: "The cluster's hosts by state, as this agent last saw them while leading it (0 when it does not lead)."}, []string{"state"}),
		imbalance: prometheus.NewGauge(prometheus.GaugeOpts{Name: "govisor_cluster_imbalance",
			Help: "The spread (largest minus smallest) of the ready hosts' loads, as this agent's load balancer last planned while leading the cluster."}),
		migrations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "govisor_controller_migrations_total",
			Help: "Live migrations this agent's controllers, as the cluster's leader, carried out, by cause."}, []string{"cause"}),
	}
	a.mig = newMigrator(a)
	n := node.New(node.Config{Store: st, HostName: cfg.HostName, AgentID: id, StateDir: cfg.StateDir, Executable: cfg.Executable,
		StopTimeout: cfg.StopTimeout, ResyncEvery: cfg.ResyncEvery, MigrationHost: a.migrationHost(), Logger: cfg.Logger,
		NoJail: cfg.NoJail, Seccomp: cfg.Seccomp})
	a.vmAccess = vmAccess{st: st, node: n, host: cfg.HostName, stateDir: cfg.StateDir}
	a.newServices()
	a.evCtx, a.evStop = context.WithCancel(actx)
	if err := a.node.Adopt(ctx); err != nil {
		a.abort()
		return nil, err
	}
	if err := a.serve(); err != nil {
		a.abort()
		return nil, err
	}
	if err := a.joinCPU(actx); err != nil {
		a.abort()
		return nil, err
	}
	// Registered once the API listens: the record carries its addresses.
	if a.hostLease, err = st.RegisterHost(actx, a.hostInfo(), cfg.HostLeaseTTL); err != nil {
		a.abort()
		return nil, err
	}
	a.node.SetHostLease(a.hostLease)
	a.node.Start()
	a.leaseObs = &disklease.Observer{}
	a.loopWG.Add(4)
	go a.usageLoop()
	go a.leaderLoop()
	go a.mig.loop()
	go func() {
		defer a.loopWG.Done()
		ha.ObserveLeases(a.ctx, a.st, a.leaseObs)
	}()
	a.log.Info("agent started", "host", cfg.HostName, "agent", id, "store", a.storeKind(), "api", a.addrs)
	return a, nil
}

// abort undoes a failed New without touching VMMs.
func (a *Agent) abort() {
	a.node.Detach()
	a.cancel()
	a.closeHTTP()
	a.st.Close()
	a.lock.Close()
}

// Addrs lists the addresses the API listens on.
func (a *Agent) Addrs() []string { return a.addrs }

// Close stops the agent but leaves its VMMs running, as a crash or an
// upgrade would: the next agent on this state directory adopts them.
func (a *Agent) Close() error {
	a.node.Detach()
	a.closeHTTP()
	a.cancel()
	a.loopWG.Wait()
	err := a.st.Close()
	a.lock.Close()
	return err
}

// Shutdown stops the agent and every VMM it runs (the guest's ACPI power
// button, then SIGTERM after its stop deadline, then SIGKILL), recording
// each VM as stopped. Desired states are left
// as they are, so the VMs start again with the agent.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.node.StopStarts()
	a.closeHTTP()
	a.node.Shutdown(ctx)
	a.cancel()
	a.loopWG.Wait()
	err := a.st.Close()
	a.lock.Close()
	return err
}

func (a *Agent) closeHTTP() {
	for _, s := range a.http {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.Shutdown(ctx)
		cancel()
	}
	if a.audit != nil {
		a.audit.Close()
	}
	a.http = nil
}

func (a *Agent) storeKind() string {
	if a.st.Embedded() {
		return "embedded"
	}
	return "external"
}

// hostInfo describes this host (allocations filled in by the API handler).
func (a *Agent) hostInfo() api.Host {
	h := api.Host{
		Name: a.cfg.HostName, AgentID: a.id, Version: version(), CPUs: runtime.NumCPU(),
		MemoryMiB: a.hostMiB, Store: a.storeKind(), Started: a.started, API: a.addrs, Labels: a.cfg.Labels,
	}
	// Without its CPU a host only misses out on the baseline checks.
	if c, err := hostcpu.Read(); err == nil {
		h.CPUVendor, h.CPUModel, h.CPUFeatures = c.Vendor, c.Model, c.Features
	} else {
		a.log.Warn("host CPU unknown", "err", err)
	}
	return h
}

// version is the module version govisor was built as.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// lockStateDir takes an exclusive flock on dir/agent.lock, so that a second
// agent on the same state directory fails at once, naming the problem. The
// descriptor is close-on-exec: VMM children, which outlive the agent, must
// not hold the lock.
func lockStateDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "agent.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: lock state dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("agent: another govisor agent uses the state directory %s", dir)
		}
		return nil, fmt.Errorf("agent: lock state dir %s: %w", dir, err)
	}
	return f, nil
}

// loadAgentID reads this state directory's agent id, creating it once. It
// goes into every VMM's marker, so that agents sharing a machine (tests,
// several state directories) never adopt each other's VMMs.
func loadAgentID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if len(id) == 16 && strings.Trim(id, "0123456789abcdef") == "" {
			return id, nil
		}
		return "", fmt.Errorf("agent: %s is corrupt (want 16 hex digits)", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("agent: %w", err)
	}
	var r [8]byte
	rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("agent: save agent id: %w", err)
	}
	return id, nil
}

// stopGrace is how long a stop of s waits for its guest to power off.
func (a *Agent) stopGrace(s api.VMSpec) time.Duration { return node.StopGrace(s, a.cfg.StopTimeout) }
