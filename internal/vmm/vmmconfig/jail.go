package vmmconfig

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Jail is how a VMM is jailed (package jail): its own mount, PID, IPC and
// UTS namespaces, a root that holds only the files this VM uses, an
// unprivileged uid and gid, no capabilities, no_new_privs and, where
// cgroup v2 is mounted, a cgroup with the VM's limits.
type Jail struct {
	// ID names the jail: its cgroup (govisor/ID) and, unless UID is set,
	// the uid it runs as. The agent uses the VM's name.
	ID string `json:"id"`
	// Dir is the VM's own folder, the one writable folder the jailed VMM
	// sees (at the same path as on the host): its sockets, and the
	// snapshots it writes, go there. It is made if missing and given to
	// the VMM's uid.
	Dir string `json:"dir"`
	// Instance names this start of the jail: its root and cgroup on the
	// host. The process that starts the jail sets it (jail.Prepare).
	Instance string `json:"instance,omitempty"`
	// Files are host files bound into the jail besides those the config
	// names, given to the VMM's uid: the disks a destination VMM opens at
	// the handover of a migration on shared storage (its config names
	// none). Files that do not exist are left out.
	Files []string `json:"files,omitempty"`
	// UID and GID are the VMM's user and group; 0 derives them from ID
	// (jail.IDs).
	UID int `json:"uid,omitempty"`
	GID int `json:"gid,omitempty"`
}

// validateJail checks the jail and the seccomp mode.
func (c *Config) validateJail(n func(string) string) error {
	switch c.Seccomp {
	case "", "kill", "log", "off":
	default:
		return &FieldError{Field: "seccomp", Msg: fmt.Sprintf("%s %q: give kill, log or off", n("seccomp"), c.Seccomp)}
	}
	j := c.Jail
	if j == nil {
		return nil
	}
	switch {
	case j.ID == "" || strings.ContainsAny(j.ID, "/\x00") || j.ID == "." || j.ID == "..":
		return &FieldError{Field: "jail.id", Msg: fmt.Sprintf("%s %q: give a name without '/'", n("jail.id"), j.ID)}
	case strings.ContainsAny(j.Instance, "/\x00") || j.Instance == "." || j.Instance == "..":
		return &FieldError{Field: "jail.instance", Msg: fmt.Sprintf("%s %q: give a name without '/'", n("jail.instance"), j.Instance)}
	case !filepath.IsAbs(j.Dir):
		return &FieldError{Field: "jail.dir", Msg: fmt.Sprintf("%s %q: give an absolute path (the VM's own folder)", n("jail.dir"), j.Dir)}
	case filepath.Clean(j.Dir) == "/":
		return &FieldError{Field: "jail.dir", Msg: fmt.Sprintf("%s /: give the VM's own folder, not the root", n("jail.dir"))}
	case j.UID < 0 || j.GID < 0:
		return &FieldError{Field: "jail.uid", Msg: fmt.Sprintf("%s: give a uid and gid of 1 or more (0: derived from the id)", n("jail.uid"))}
	}
	return nil
}
