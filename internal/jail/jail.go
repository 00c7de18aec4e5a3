// Package jail starts a VMM process jailed, as Firecracker's jailer does
// (its design, not its code): the jail's first process is cloned into new
// mount, PID, IPC and UTS namespaces (SysProcAttr) and a cgroup v2 with
// the VM's limits (Cgroup); there Enter mounts a small tmpfs holding only
// what this VM uses, pivots into it, becomes an unprivileged uid and gid
// with no capabilities and no_new_privs, and executes the VMM.
//
// Paths: every host file and folder the VMM uses appears in the jail at
// the same path as on the host (the kernel, the initrd, the disks, the
// VM's folder...), and nothing else does. ForVMM turns the config's
// relative paths into absolute ones, so the jailed VMM's config names
// what the jail holds. Keeping the host's paths matters because paths
// outlive the process: a snapshot records its disks' paths and reopens
// them on restore, and the control API names snapshot folders and
// migration sockets by host path; with the same paths inside and out, a
// snapshot taken jailed restores unjailed and the other way round.
//
// The jail's root is a small tmpfs that the parent process mounts on the
// host (Prepare: Base/INSTANCE/root, a shared mount; each start of a
// jail is an instance of its own) before it starts the
// jail; the jail's copy of it is a slave, so a file the host binds into
// the root later (AddFile: a disk hot-added to the running VM) appears in
// the jail at its own path, while nothing the jail mounts reaches the
// host. The parent unmounts it when the VMM has exited (RemoveRoot).
//
// The VM's folder (vmmconfig.Jail.Dir) is the one writable folder, given
// to the jail's uid: its sockets and snapshots go there. Disks the guest
// writes are given to the uid too; read-only inputs (kernel, initrd,
// read-only disks) must be readable by it (mode o+r, as files usually
// are).
package jail

import (
	"hash/fnv"
	"strings"
)

// Base holds the jails' roots on the host: Base/ID/root. A variable so
// that tests can move it.
var Base = "/run/govisor/jail"

// ConfigPath is where Enter writes the jailed VMM's config (in the jail).
const ConfigPath = "/vmm.json"

// LandlockEnv is the variable Enter passes the VMM to say how Landlock
// confines it ("abi N: ..." or "off: why"); the VMM reports it in its
// GET /vm (Enter also logs it).
const LandlockEnv = "GOVISOR_JAIL_LANDLOCK"

// ExePath is where the VMM binary is bound in the jail.
const ExePath = "/govisor"

// Spec is one jail: who runs in it and what it holds.
type Spec struct {
	ID       string // the jail's name (its hostname)
	Instance string // this start's root (RootDir) and cgroup (CgroupDir), from Prepare
	UID, GID int
	Dir      string   // the VM's folder: writable, owned by UID
	Cwd      string   // the VMM's working directory in the jail (Dir or below)
	Files    []Bind   // host files and folders, each at its own path
	Devices  []string // host device nodes made anew in the jail, owned by UID
	Empty    []string // folders made empty in the jail (markers such as /sys/module/kvm_pvm)
	Chown    []string // host files given to UID (disks the guest writes)
	Exe      string   // the VMM binary on the host, bound at ExePath
}

// Bind is a host file or folder bound into the jail at its own path.
type Bind struct {
	Path     string
	ReadOnly bool
}

// uidBase starts the range of derived uids: far above login users and
// the usual subordinate-id ranges of containers (100000 on).
const uidBase = 2_000_000_000

// uidSpan is how many uids IDs derives from.
const uidSpan = 100_000_000

// IDs derives a jail's uid and gid (equal) from its id: the same VM gets
// the same uid each time it starts (its files stay its own), and two VMs
// get different ones but for a hash collision (1 in 10^8 per pair). Only
// the id's last dot-separated part counts, the VM's name in an agent's
// "AGENT.VM": every host of a cluster gives a VM the same uid, because
// NFS checks the writer's uid on every write, so a disk on shared storage
// given to the VM's uid on one host must stay writable by the VM's VMM on
// another (both ends of a live migration write it).
func IDs(id string) (uid, gid int) {
	if i := strings.LastIndexByte(id, '.'); i >= 0 {
		id = id[i+1:]
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	n := uidBase + int(h.Sum32()%uidSpan)
	return n, n
}
