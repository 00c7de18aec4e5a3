package jail

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// RootDir is the host's path of the root of jail instance inst.
func RootDir(inst string) string { return filepath.Join(Base, inst, "root") }

// makeRoot makes a new instance of jail id and mounts its root on the
// host: an empty tmpfs (device nodes need a mount without nodev; suid
// binaries have nothing to gain), a shared mount so that AddFile reaches
// the jail. Each start of a VMM gets an instance of its own, so that the
// clean-up after a VMM that exits never touches its successor's.
func makeRoot(id string) (inst string, err error) {
	if err := os.MkdirAll(Base, 0o700); err != nil {
		return "", fmt.Errorf("jail: %w", err)
	}
	d, err := os.MkdirTemp(Base, id+"-")
	if err != nil {
		return "", fmt.Errorf("jail: %w", err)
	}
	inst = filepath.Base(d)
	dir := RootDir(inst)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("jail: %w", err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID, "mode=0755,size=1m,nr_inodes=4096"); err != nil {
		RemoveRoot(inst)
		return "", fmt.Errorf("jail: mount the root of %s: %w", id, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		RemoveRoot(inst)
		return "", fmt.Errorf("jail: share the root of %s: %w", id, err)
	}
	return inst, nil
}

// RemoveRoot unmounts the root of jail instance inst and what was bound
// in it, once its VMM has exited.
func RemoveRoot(inst string) {
	dir := RootDir(inst)
	for unix.Unmount(dir, unix.MNT_DETACH) == nil {
	}
	os.Remove(dir)
	os.Remove(filepath.Join(filepath.Dir(dir), "host")) // pivot's, on an initramfs root
	os.Remove(filepath.Dir(dir))
}

// HasRoot reports whether jail instance inst has its root mounted.
func HasRoot(inst string) bool {
	var st, parent unix.Stat_t
	dir := RootDir(inst)
	return unix.Stat(dir, &st) == nil && unix.Stat(filepath.Dir(dir), &parent) == nil && st.Dev != parent.Dev
}

// InstanceOf finds the instance of jail id that process pid runs in ("" if
// none): the one whose root is the process's (an agent that adopts its
// VMMs after a restart asks).
func InstanceOf(id string, pid int) string {
	var root unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/root", pid), &root) != nil {
		return ""
	}
	dirs, _ := filepath.Glob(filepath.Join(Base, id+"-*"))
	for _, d := range dirs {
		var st unix.Stat_t
		inst := filepath.Base(d)
		if HasRoot(inst) && unix.Stat(RootDir(inst), &st) == nil && st.Dev == root.Dev && st.Ino == root.Ino {
			return inst
		}
	}
	return ""
}

// AddFile makes the host's file path appear in the running jail instance
// inst at the same path (read-only if ro), given to uid and gid if it is writable:
// the bind made on the host propagates into the jail's slave copy of its
// root. Files already there are left as they are.
func AddFile(inst, path string, ro bool, uid, gid int) error {
	dst := filepath.Join(RootDir(inst), path)
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if !ro {
		if err := os.Chown(path, uid, gid); err != nil {
			return fmt.Errorf("jail: give %s to uid %d: %w", path, uid, err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if fi.IsDir() {
		return errors.New("jail: AddFile binds files, not folders")
	}
	return bind(path, dst, false, ro)
}

// Prepare readies a new instance of jail id on the host before its first
// process starts (with SysProcAttr(cgroupFD)): its root and its cgroup
// with limits l (Cgroup; -1 without cgroup v2). The instance's name goes
// into the jailed config (vmmconfig.Jail.Instance). The caller closes
// cgroupFD once the process has started, and calls Cleanup once it has
// exited.
func Prepare(id string, l Limits) (inst string, cgroupFD int, err error) {
	if inst, err = makeRoot(id); err != nil {
		return "", -1, err
	}
	fd, err := Cgroup(inst, l)
	if err != nil {
		RemoveRoot(inst)
		return "", -1, err
	}
	return inst, fd, nil
}

// Cleanup removes what Prepare made for jail instance inst, its VMM gone.
func Cleanup(inst string) {
	RemoveCgroup(inst)
	RemoveRoot(inst)
}
