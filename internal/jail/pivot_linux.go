package jail

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// pivot makes the mount at root the process's root with pivot_root(2)
// and detaches the old root, so that no path leads back to the host's
// files (a chroot alone can be left by a process that keeps a
// capability).
//
// pivot_root refuses to move a root mount that has no parent: the
// initramfs (rootfs) a host boots into and keeps, as the lab hosts do.
// There the host's root is first bound recursively onto the jail's own
// mount point (so that its copy is a mount with a parent) and chrooted
// into; the jail's tmpfs, a submount, comes along, and the pivot works
// from that copy.
func pivot(root string) error {
	err := pivotOnce(root)
	if !errors.Is(err, unix.EINVAL) {
		return err
	}
	hostCopy := filepath.Join(filepath.Dir(root), "host")
	if err := unix.Mkdir(hostCopy, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("jail: %s: %w", hostCopy, err)
	}
	if err := unix.Mount("/", hostCopy, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("jail: bind the root for pivot_root: %w", err)
	}
	if err := unix.Chroot(hostCopy); err != nil {
		return fmt.Errorf("jail: chroot %s: %w", hostCopy, err)
	}
	return pivotOnce(root)
}

// pivotOnce is pivot_root(".", ".") in root (pivot_root(2): the old root
// is stacked on the new one and then detached).
func pivotOnce(root string) error {
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("jail: chdir %s: %w", root, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("jail: pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("jail: detach the old root: %w", err)
	}
	return unix.Chdir("/")
}

// dropPrivileges becomes uid and gid for good, with no capabilities, none
// to regain (bounding and ambient sets empty) and no_new_privs: a setuid
// binary or file capabilities give nothing. The bounding set and
// no_new_privs are set on the calling thread, the one that executes the
// VMM; setgroups, setresgid and setresuid apply to every thread (Go runs
// them on all).
func dropPrivileges(uid, gid int) error {
	for c := 0; c <= 63; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EINVAL) {
				break // past the kernel's last capability
			}
			return fmt.Errorf("jail: drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("jail: clear the ambient capabilities: %w", err)
	}
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("jail: setgroups: %w", err)
	}
	if err := unix.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("jail: setresgid %d: %w", gid, err)
	}
	// Leaving uid 0 for a uid that is none of real, effective and saved
	// clears the permitted and effective capabilities (capabilities(7)).
	if err := unix.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("jail: setresuid %d: %w", uid, err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("jail: no_new_privs: %w", err)
	}
	return nil
}
