package jail

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Enter builds the jail spec in the namespaces its process was cloned
// into (SysProcAttr), moves in, drops every privilege and executes the
// VMM binary (bound at ExePath) with argv and env; the VMM's config,
// config, is written at ConfigPath. It returns only on failure.
//
// The caller must hold its OS thread (runtime.LockOSThread) from before
// Enter: the capability bounding set and no_new_privs are per thread, and
// the thread that sets them must be the one that calls execve.
func Enter(s Spec, config []byte, argv, env []string) error {
	if os.Getpid() != 1 {
		return errors.New("jail: Enter runs as the first process of a new PID namespace (start it with SysProcAttr)")
	}
	if err := s.build(config); err != nil {
		return err
	}
	if err := pivot(RootDir(s.Instance)); err != nil {
		return err
	}
	if err := unix.Chdir(s.Cwd); err != nil {
		return fmt.Errorf("jail: chdir %s: %w", s.Cwd, err)
	}
	// Nothing but the binds and the VM's folder is writable from now on.
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID, ""); err != nil {
		return fmt.Errorf("jail: remount the root read-only: %w", err)
	}
	host := s.ID
	if len(host) > 64 { // HOST_NAME_MAX
		host = host[len(host)-64:]
	}
	if err := unix.Sethostname([]byte(host)); err != nil {
		return fmt.Errorf("jail: hostname: %w", err)
	}
	if err := dropPrivileges(s.UID, s.GID); err != nil {
		return err
	}
	// Landlock last: it needs no_new_privs, and binds nothing more once
	// set (issue 15; where the kernel lacks it, the VMM says so).
	ll, err := confine(s)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "govisor jail: Landlock %s\n", ll)
	env = append(slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, LandlockEnv+"=") }), LandlockEnv+"="+ll)
	err = syscall.Exec(ExePath, argv, env)
	return fmt.Errorf("jail: exec the VMM: %w", err)
}

// build fills the jail's root (MakeRoot): still on the host's root, as
// root, in the jail's own mount namespace.
func (s Spec) build(config []byte) error {
	// Nothing mounted here may reach the host's namespace; what the host
	// binds into the root later (AddFile) reaches the jail.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("jail: make the mounts slaves: %w", err)
	}
	root := RootDir(s.Instance)
	if s.Instance == "" || !HasRoot(s.Instance) {
		return fmt.Errorf("jail: the root %s is not mounted (jail.Prepare)", root)
	}
	in := func(p string) string { return filepath.Join(root, p) }
	// The VM's folder, its own.
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("jail: the VM's folder: %w", err)
	}
	if err := os.Chown(s.Dir, s.UID, s.GID); err != nil {
		return fmt.Errorf("jail: give the VM's folder to uid %d: %w", s.UID, err)
	}
	if err := bind(s.Dir, in(s.Dir), true, false); err != nil {
		return err
	}
	for _, p := range s.Chown {
		if err := os.Chown(p, s.UID, s.GID); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("jail: give %s to uid %d: %w", p, s.UID, err)
		}
	}
	for _, b := range s.Files {
		fi, err := os.Stat(b.Path)
		if err != nil {
			return fmt.Errorf("jail: %w", err)
		}
		if err := bind(b.Path, in(b.Path), fi.IsDir(), b.ReadOnly); err != nil {
			return err
		}
	}
	if err := bind(s.Exe, in(ExePath), false, true); err != nil {
		return err
	}
	for _, d := range s.Devices {
		if err := s.mknod(d, in(d)); err != nil {
			return err
		}
	}
	for _, d := range s.Empty {
		if err := os.MkdirAll(in(d), 0o755); err != nil {
			return fmt.Errorf("jail: %w", err)
		}
	}
	// A procfs of the jail's PID namespace: the VMM reads /proc/self
	// (pagemap) and /proc/cpuinfo and /proc/meminfo, and sees no other
	// process.
	if err := os.MkdirAll(in("/proc"), 0o555); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.Mount("proc", in("/proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("jail: mount /proc: %w", err)
	}
	if err := os.WriteFile(in(ConfigPath), config, 0o644); err != nil {
		return fmt.Errorf("jail: write the VMM's config: %w", err)
	}
	return nil
}

// bind binds the host's src (a folder if dir) at dst, made with its
// parents, read-only if ro.
func bind(src, dst string, dir, ro bool) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if dir {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("jail: %w", err)
		}
	} else if err := os.WriteFile(dst, nil, 0o600); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("jail: bind %s: %w", src, err)
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV)
	if ro {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("jail: remount %s nosuid,nodev: %w", src, err)
	}
	return nil
}

// mknod makes the host's device node dev at dst, owned by the jail's uid
// and only by it (the host's node may be root's alone, as /dev/kvm is).
func (s Spec) mknod(dev, dst string) error {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return fmt.Errorf("jail: %s: %w", dev, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return fmt.Errorf("jail: %s is not a character device", dev)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.Mknod(dst, unix.S_IFCHR|0o600, int(st.Rdev)); err != nil {
		return fmt.Errorf("jail: mknod %s: %w", dev, err)
	}
	if err := os.Chown(dst, s.UID, s.GID); err != nil {
		return fmt.Errorf("jail: give %s to uid %d: %w", dev, s.UID, err)
	}
	return nil
}
