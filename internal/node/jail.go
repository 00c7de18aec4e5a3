package node

import (
	"os"
	"strings"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/jail"
	"github.com/govisor/govisor/internal/seccomp"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// jailID names the jail of VM name on this host (its cgroup, and the uid
// it runs as): the agent's id keeps two agents on one host apart.
func (n *Node) jailID(name string) string { return n.id + "." + name }

// jail makes c the config of a jailed VMM of VM name, whose folder is dir,
// unless this node starts its VMMs unjailed.
func (n *Node) jail(name, dir string, c *vmmconfig.Config) {
	if n.cfg.NoJail {
		return
	}
	c.Jail = &vmmconfig.Jail{ID: n.jailID(name), Dir: dir}
	c.Seccomp = n.cfg.Seccomp
	if c.Seccomp == "" {
		c.Seccomp = string(seccomp.ModeKill)
	}
}

// tapOwner is the uid and gid that may attach to VM name's TAPs: its
// jail's (-1, -1 for an unjailed VMM, which runs as root).
func (n *Node) tapOwner(name string) (uid, gid int) {
	if n.cfg.NoJail {
		return -1, -1
	}
	return jail.IDs(n.jailID(name))
}

// jailLimits are the cgroup limits of a jailed VMM of s with config c.
func jailLimits(s api.VMSpec, c vmmconfig.Config) jail.Limits {
	cpus := c.CPUs
	if cpus == 0 {
		cpus = s.CPUs
	}
	mib := c.MemoryMiB
	if mib == 0 && s.Memory != "" {
		mib, _ = api.ParseMemoryMiB(s.Memory)
	}
	if mib == 0 {
		mib = vmmconfig.DefaultMemoryMiB
	}
	return jail.Limits{CPUs: cpus, MemoryMiB: mib, Pids: jail.PidsMax(max(cpus, 1))}
}

// seccompViolation reads, from the VMM log at path, the forbidden syscall
// that ended the VMM's last run ("" if its filter did not end it).
func seccompViolation(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-64<<10, 0)
	buf := make([]byte, fi.Size()-off)
	k, _ := f.ReadAt(buf, off)
	log := string(buf[:k])
	// Only the last run's messages: Spawn starts each with a --- line.
	if i := strings.LastIndex(log, "\n--- "); i >= 0 {
		log = log[i:]
	}
	if v, ok := seccomp.ParseViolation([]byte(log)); ok {
		return v.String()
	}
	return ""
}
