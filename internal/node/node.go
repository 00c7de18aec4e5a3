package node

import (
	"context"
	"log/slog"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
)

// Config configures a host's node side.
type Config struct {
	Store       *store.Store
	HostName    string        // this host's name in etcd
	AgentID     string        // goes into every VMM's marker
	StateDir    string        // per-VM folders live in StateDir/vms
	Executable  string        // the govisor binary to run VMMs with
	StopTimeout time.Duration // default grace of a stop
	ResyncEvery time.Duration // full reconcile period besides etcd watch events
	// MigrationHost is the address VMMs receiving a live migration listen on.
	MigrationHost string
	Logger        *slog.Logger
	NoJail        bool   // start VMMs unjailed (default: jailed, see Jail)
	Seccomp       string // the jailed VMMs' seccomp mode (default kill)
}

// Node reconciles this host's VMM processes to the desired state in etcd:
// it starts and stops them, restarts them by policy, records pids and exit
// reasons, adopts still-running VMMs after an agent restart, keeps the
// destination VMMs of live migrations to this host, and makes the host's
// bridges and TAPs.
type Node struct {
	cfg    Config
	st     *store.Store
	id     string
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	kick   chan struct{}
	loopWG sync.WaitGroup
	supWG  sync.WaitGroup
	// netMu keeps reconcileNetworks out while a network is defined or
	// deleted here (LockNetworks): the bridge of a network being defined
	// exists before its definition is in etcd, and a pass in between took
	// it for a deleted network's bridge and removed it.
	netMu sync.Mutex

	mu          sync.Mutex
	procs       map[string]*Proc
	incoming    map[string]*Proc     // destination VMMs of live migrations to this host
	restoreNext map[string]string    // the snapshot folder the next start of a VM resumes from
	notBefore   map[string]time.Time // restart back-off per VM
	backoff     map[string]time.Duration
	lease       *store.HostLease // this host's etcd lease (see SetHostLease)
	stopping    bool             // Shutdown or Detach began: no more starts
	detached    bool             // Detach: leave the VMMs running, record nothing more
}

// New returns the node side of a host; Adopt, then Start run it.
func New(cfg Config) *Node {
	ctx, cancel := context.WithCancel(context.Background())
	return &Node{
		cfg: cfg, st: cfg.Store, id: cfg.AgentID, log: cfg.Logger, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1),
		procs: map[string]*Proc{}, incoming: map[string]*Proc{}, restoreNext: map[string]string{}, notBefore: map[string]time.Time{}, backoff: map[string]time.Duration{},
	}
}

// Start runs the reconciler and the watch that pokes it.
func (n *Node) Start() {
	n.loopWG.Add(3)
	go n.reconcileLoop()
	go n.watchLoop()
	go n.feedLoop()
}

// Detach stops the node but leaves its VMMs running, as a crash or an
// upgrade would: the next agent on this state directory adopts them.
func (n *Node) Detach() {
	n.mu.Lock()
	n.stopping, n.detached = true, true
	n.mu.Unlock()
	n.cancel()
	n.loopWG.Wait()
}

// Shutdown stops every VMM (the guest's ACPI power button, then SIGTERM
// after its stop deadline, then SIGKILL), recording each VM as stopped,
// and then the node; it gives up waiting for the VMMs when ctx ends.
func (n *Node) Shutdown(ctx context.Context) {
	for _, p := range n.StopStarts() {
		p.Stop()
	}
	done := make(chan struct{})
	go func() { n.supWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	n.mu.Lock()
	n.detached = true
	n.mu.Unlock()
	n.cancel()
	n.loopWG.Wait()
}

// StopStarts begins a shutdown: no VMM starts any more, and the
// destination VMMs of migrations to this host go (their sources keep the
// VMs). It returns the VMMs that run.
func (n *Node) StopStarts() []*Proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stopping = true
	ps := make([]*Proc, 0, len(n.procs))
	for _, p := range n.procs {
		ps = append(ps, p)
	}
	for _, p := range n.incoming {
		p.Kill() // a migration to this host fails; its source keeps the VM
	}
	return ps
}

// Proc returns the VMM process of VM name on this host, or nil.
func (n *Node) Proc(name string) *Proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.procs[name]
}

// Procs returns the VMM processes of this host by VM name.
func (n *Node) Procs() map[string]*Proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]*Proc, len(n.procs))
	for k, p := range n.procs {
		out[k] = p
	}
	return out
}

// IncomingCount is how many destination VMMs of migrations wait here.
func (n *Node) IncomingCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.incoming)
}

// ClearBackoff lets the next start of VM name happen at once: a user's
// start overrides the restart back-off.
func (n *Node) ClearBackoff(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.notBefore, name)
	delete(n.backoff, name)
}

// Settled reports whether VM name has no VMM here and no restart pending.
func (n *Node) Settled(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, live := n.procs[name]
	_, backingOff := n.notBefore[name]
	return !live && !backingOff
}

// RestoreNext makes the next start of VM name resume the snapshot in dir
// (once), at once.
func (n *Node) RestoreNext(name, dir string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.restoreNext[name] = dir
	delete(n.notBefore, name)
	delete(n.backoff, name)
}

// CancelRestore undoes RestoreNext.
func (n *Node) CancelRestore(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.restoreNext, name)
}

// VMDir is where a VM's files live under the state directory stateDir.
func VMDir(stateDir, name string) string { return filepath.Join(stateDir, "vms", name) }

// StopGrace is how long a stop of s waits for its guest to power off:
// its stopTimeout, else def.
func StopGrace(s api.VMSpec, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(s.StopTimeout); err == nil && s.StopTimeout != "" {
		return d
	}
	return def
}

func (n *Node) vmDir(name string) string { return VMDir(n.cfg.StateDir, name) }

// ConsolePath is the file a VM's serial console is written to.
func (n *Node) ConsolePath(name string) string { return filepath.Join(n.vmDir(name), "console.log") }

func (n *Node) stopGrace(s api.VMSpec) time.Duration { return StopGrace(s, n.cfg.StopTimeout) }

// NameRE is what a VM name looks like (a DNS label): names become paths
// under the state directory, so the node acts on no other.
var NameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
