package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/govisor/govisor/internal/hostnet"
)

// The lab network: a bridge on this machine with a link-local subnet; the
// machine is .1, lab host i is .10+i. Network n is bridge gvlabN on
// 169.254.(77+n).0/24 (tests use their own, beside a user's lab).
const (
	Bridge   = "gvlab0"
	labAlias = "govisor-lab"
)

func bridgeName(n int) string { return fmt.Sprintf("gvlab%d", n) }
func subnet(n int) string     { return fmt.Sprintf("169.254.%d.", 77+n) }

// State is a lab that `govisor lab up` started, saved in its folder.
type State struct {
	Dir    string      `json:"-"`
	Bridge string      `json:"bridge"`
	Token  string      `json:"token"`
	Accel  Accel       `json:"accel"`
	Hosts  []HostState `json:"hosts"`
	// Storage is the storage host: it exports the lab's shared storage
	// over NFS, and every lab host mounts it at SharedPath.
	Storage *HostState `json:"storage,omitempty"`
	// HostLeaseTTL is the agents' --host-lease-ttl (0: their default).
	HostLeaseTTL time.Duration `json:"hostLeaseTTL,omitempty"`
	// Join: the hosts after the first join its cluster (serve --join)
	// instead of starting as members of a 3-member etcd.
	Join bool `json:"join,omitempty"`
	// ca signs the agents' TLS certificates (only while Up runs).
	ca *labCA
}

// The lab's shared storage: the storage host's name, where lab hosts mount
// its export, and the shared pool `lab up` creates there.
const (
	StorageHost = "store"
	SharedPath  = "/srv/shared"
	SharedPool  = "shared"
)

// All is every lab host, the storage host first.
func (s *State) All() []HostState {
	if s.Storage == nil {
		return s.Hosts
	}
	return append([]HostState{*s.Storage}, s.Hosts...)
}

// HostState is one lab host of a State.
type HostState struct {
	Name string `json:"name"`
	IP   string `json:"ip"`
	Tap  string `json:"tap"`
	PID  int    `json:"pid"`
	Dir  string `json:"dir"`
	Etcd bool   `json:"etcd"`          // carries an etcd member
	CPU  string `json:"cpu,omitempty"` // QEMU CPU model, when not the default
}

// Agent is a client of the host's lab agent.
func (s *State) Agent(h HostState) *AgentClient {
	return &AgentClient{Addr: fmt.Sprintf("%s:%d", h.IP, AgentPort), Token: s.Token}
}

// Host finds a lab host by name.
func (s *State) Host(name string) (HostState, error) {
	var names []string
	for _, h := range s.All() {
		if h.Name == name {
			return h, nil
		}
		names = append(names, h.Name)
	}
	return HostState{}, fmt.Errorf("lab: no lab host %q (the lab has %s)", name, strings.Join(names, ", "))
}

// Running reports whether h's QEMU process is alive: the PID exists and is
// the QEMU this lab started (its command line names the host), so a reused
// PID is never mistaken for it, or killed.
func (h HostState) Running() bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", h.PID))
	if err != nil {
		return false
	}
	return strings.Contains(string(cmdline), "govisor-lab-"+h.Name+"\x00")
}

func statePath(dir string) string { return filepath.Join(dir, "lab.json") }

// Load reads the lab saved in dir.
func Load(dir string) (*State, error) {
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("lab: no lab is up (nothing in %s): start one with `govisor lab up`", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("lab: %s is corrupt (%v): remove the lab with `govisor lab down`", statePath(dir), err)
	}
	s.Dir = dir
	return &s, nil
}

func (s *State) save() error {
	b, _ := json.MarshalIndent(s, "", "  ")
	tmp := statePath(s.Dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return os.Rename(tmp, statePath(s.Dir))
}

// UpConfig describes a lab to start.
type UpConfig struct {
	Dir      string // the lab's folder (state, per-host logs)
	Hosts    int
	CPUs     int // each host's vCPUs (0: DefaultCPUs)
	MemoryMB int
	Assets   Assets
	BinDir   string // govisor and govisor-agent for the lab hosts
	GuestDir string // the test guest, put in each host's /guest
	WithQEMU bool   // QEMU inside each lab host, and the firmware boot disk (benchmarks)
	// Storage adds the storage host: shared storage (NFS) for every lab
	// host, StorageGiB large (default 16, sparse).
	Storage    bool
	StorageGiB int
	// CPUModels gives host i the QEMU CPU model CPUModels[(i-1) % len]
	// (e.g. "EPYC-Rome" or "EPYC,-avx2"; SVM and nested paging are added):
	// a cluster of hosts with different CPUs. Empty: every host gets the
	// accelerator's default.
	CPUModels []string
	// HostLeaseTTL is the agents' --host-lease-ttl (0: their default).
	HostLeaseTTL time.Duration
	// Join grows the cluster as on real hosts: the first host's agent
	// starts a one-member etcd and the others join it with `govisor serve
	// --join` (its first two joiners become members).
	Join bool
	Net  int // which lab network: 0 for people, others for tests
	Log  io.Writer
}

// Up starts a lab: a bridge, then each host's TAP and QEMU, then waits for
// every host's lab agent. Services (etcd, govisor serve) are started by
// StartCluster. A failure stops what was started.
func Up(ctx context.Context, cfg UpConfig) (st *State, err error) {
	if cfg.Net < 0 || cfg.Net > 100 {
		return nil, fmt.Errorf("lab: network %d: want 0 to 100", cfg.Net)
	}
	if cfg.Hosts < 1 || cfg.Hosts > 50 {
		return nil, fmt.Errorf("lab: --hosts %d: want 1 to 50", cfg.Hosts)
	}
	if old, err := Load(cfg.Dir); err == nil {
		for _, h := range old.All() {
			if h.Running() {
				return nil, fmt.Errorf("lab: a lab is already up in %s (host %s runs): `govisor lab down` first", cfg.Dir, h.Name)
			}
		}
		old.Down(io.Discard)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	st = &State{Dir: cfg.Dir, Bridge: bridgeName(cfg.Net), Token: hex.EncodeToString(tok), Accel: PickAccel(), HostLeaseTTL: cfg.HostLeaseTTL, Join: cfg.Join}
	if cfg.CPUs == 0 {
		cfg.CPUs = DefaultCPUs(st.Accel)
	}
	if st.ca, err = newLabCA(); err != nil {
		return nil, err
	}
	bridgeNet := subnet(cfg.Net)
	defer func() {
		if err != nil {
			st.Down(io.Discard)
		}
	}()
	fmt.Fprintf(cfg.Log, "lab: %d host(s), %d vCPUs and %d MiB each, %s, on bridge %s (%s1/24)\n",
		cfg.Hosts, cfg.CPUs, cfg.MemoryMB, st.Accel.Kind, st.Bridge, bridgeNet)
	if _, err := hostnet.EnsureBridge(hostnet.Bridge{Name: st.Bridge, Addr: netip.MustParsePrefix(bridgeNet + "1/24"), Alias: labAlias}); err != nil {
		return st, fmt.Errorf("lab: bridge %s: %w (lab up needs root)", st.Bridge, err)
	}
	if cfg.Storage {
		h := HostState{Name: StorageHost, IP: bridgeNet + "2", Tap: st.Bridge + "-s"}
		h.Dir = filepath.Join(cfg.Dir, h.Name)
		disk, err := makeSharedDisk(h.Dir, cfg.StorageGiB)
		if err != nil {
			return st, err
		}
		hc := HostConfig{CPUs: 1, MemoryMB: 512, Disk: disk, Cmdline: []string{"lab.role=store"}}
		if err := st.startHost(cfg, &h, hc, 0); err != nil {
			return st, err
		}
		st.Storage = &h
		if err := st.save(); err != nil {
			return st, err
		}
	}
	for i := 1; i <= cfg.Hosts; i++ {
		h := HostState{
			Name: fmt.Sprintf("lab%d", i), IP: fmt.Sprintf("%s%d", bridgeNet, 10+i),
			Tap: fmt.Sprintf("%s-%d", st.Bridge, i), Etcd: i <= 3,
		}
		h.Dir = filepath.Join(cfg.Dir, h.Name)
		hc := HostConfig{CPUs: cfg.CPUs, MemoryMB: cfg.MemoryMB, WithQEMU: cfg.WithQEMU}
		if len(cfg.CPUModels) > 0 {
			h.CPU = cfg.CPUModels[(i-1)%len(cfg.CPUModels)]
		}
		if st.Storage != nil {
			hc.Cmdline = []string{"lab.nfs=" + st.Storage.IP}
		}
		if err := st.startHost(cfg, &h, hc, i); err != nil {
			return st, err
		}
		st.Hosts = append(st.Hosts, h)
		if err := st.save(); err != nil {
			return st, err
		}
	}
	for _, h := range st.All() {
		if err := st.waitAgent(ctx, h, 5*time.Minute); err != nil {
			return st, err
		}
		fmt.Fprintf(cfg.Log, "lab: %s is up at %s\n", h.Name, h.IP)
	}
	return st, nil
}

// startHost starts lab host h (its TAP, initramfs and QEMU) with the
// host-specific parts of hc; i numbers its MAC address.
func (st *State) startHost(cfg UpConfig, h *HostState, hc HostConfig, i int) error {
	if _, err := hostnet.EnsureTAP(hostnet.TAP{Name: h.Tap, Bridge: st.Bridge, Owner: -1, Group: -1, Alias: labAlias}); err != nil {
		return fmt.Errorf("lab: TAP %s: %w", h.Tap, err)
	}
	ov := &Overlay{}
	if err := ov.AddDir("/opt/govisor/bin", cfg.BinDir); err != nil {
		return err
	}
	files := []string{"bzImage", "vmlinux", "initrd.cpio"}
	if cfg.WithQEMU {
		// bench/boot -firmware boots the Debian disks through SeaBIOS and
		// OVMF in govisor and in QEMU.
		files = append(files, "bios-256k.bin", "debian-bios.qcow2", "OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd", "debian-uefi.qcow2")
	}
	for _, f := range files {
		if p := filepath.Join(cfg.GuestDir, f); fileExists(p) && h.Name != StorageHost {
			ov.Add("/guest/"+f, p, 0o644)
		}
	}
	if h.Name != StorageHost {
		if err := st.ca.addTLS(ov, *h, int64(i+2), st.Token); err != nil {
			return err
		}
	}
	hc.Name, hc.Dir, hc.Assets, hc.Accel, hc.Overlay = h.Name, h.Dir, cfg.Assets, st.Accel, ov
	if h.CPU != "" {
		hc.Accel.CPU = h.CPU + ",+svm,+npt"
	}
	hc.ConsoleSocket, hc.Detach = true, true
	hc.Cmdline = append([]string{"lab.ip=" + h.IP + "/24", fmt.Sprintf("lab.agent=%d", AgentPort), "lab.token=" + st.Token}, hc.Cmdline...)
	hc.NIC = &NIC{Tap: h.Tap, MAC: fmt.Sprintf("52:54:00:%02x:00:%02x", 77+cfg.Net, i)}
	qh, err := Start(hc)
	if err != nil {
		return err
	}
	h.PID = qh.PID()
	return nil
}

// makeSharedDisk makes the storage host's disk: a sparse raw file with an
// ext4 file system, which the storage host exports over NFS.
func makeSharedDisk(dir string, gib int) (string, error) {
	if gib <= 0 {
		gib = 16
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	path := filepath.Join(dir, "shared.img")
	os.Remove(path)
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "govisor-lab", path, fmt.Sprintf("%dG", gib)).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("lab: make the shared disk: mkfs.ext4: %v: %s (install e2fsprogs: scripts/deps.sh lab)", err, strings.TrimSpace(string(out)))
	}
	return path, nil
}

func (s *State) waitAgent(ctx context.Context, h HostState, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	a := s.Agent(h)
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		ok := a.Healthy(cctx)
		cancel()
		if ok {
			return nil
		}
		if !h.Running() {
			return fmt.Errorf("lab: %s's QEMU ended while booting; its console:\n%s", h.Name, tail(filepath.Join(h.Dir, "console.log"), 30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: %s's lab agent did not answer within %v; its console:\n%s", h.Name, limit, tail(filepath.Join(h.Dir, "console.log"), 30))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Kill pulls the power of a lab host: its QEMU process dies with
// everything in it.
func (s *State) Kill(name string) error {
	h, err := s.Host(name)
	if err != nil {
		return err
	}
	if !h.Running() {
		return fmt.Errorf("lab: %s is not running", name)
	}
	if err := syscall.Kill(h.PID, syscall.SIGKILL); err != nil {
		return fmt.Errorf("lab: kill %s (QEMU pid %d): %w", name, h.PID, err)
	}
	for i := 0; i < 100 && h.Running(); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// Partition cuts a lab host off the lab network (cut=false heals it): its
// TAP goes down, so no frame passes either way.
func (s *State) Partition(name string, cut bool) error {
	h, err := s.Host(name)
	if err != nil {
		return err
	}
	if err := hostnet.SetUp(h.Tap, !cut); err != nil {
		return fmt.Errorf("lab: %s: %w", name, err)
	}
	return nil
}

// Partitioned reports whether h's TAP is down.
func (s *State) Partitioned(h HostState) bool {
	l, err := hostnet.Get(h.Tap)
	return err == nil && !l.Up
}

// Down stops every lab host and removes their TAPs, the bridge and the
// lab's folder: nothing is left behind.
func (s *State) Down(log io.Writer) error {
	var errs []error
	for _, h := range s.All() {
		if h.Running() {
			syscall.Kill(h.PID, syscall.SIGKILL)
			for i := 0; i < 100 && h.Running(); i++ {
				time.Sleep(50 * time.Millisecond)
			}
			fmt.Fprintf(log, "lab: %s stopped\n", h.Name)
		}
		if err := hostnet.DeleteTAP(h.Tap); err != nil {
			errs = append(errs, err)
		}
	}
	if s.Bridge == "" {
		s.Bridge = Bridge
	}
	// Only a bridge the lab made (its alias says so) is removed.
	if l, err := hostnet.Get(s.Bridge); err == nil && l.Alias == labAlias {
		if err := hostnet.DeleteBridge(s.Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
