package jail

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock access rights (uapi linux/landlock.h), by the ABI version that
// brought them: 1 (Linux 5.13) the first thirteen, 2 (5.19) REFER, 3
// (6.2) TRUNCATE.
const (
	llRead = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	// llMake is what the VM's folder allows besides reading and writing:
	// its sockets, snapshots (folders of files, renamed into place) and
	// their removal; not devices, nor executing.
	llMake = unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_SYM |
		unix.LANDLOCK_ACCESS_FS_REMOVE_FILE | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR
	llV1 = uint64(1<<13 - 1) // EXECUTE .. MAKE_SYM
)

// landlockABI is the kernel's Landlock ABI version; 0 with the reason
// when it has none (not built, or not enabled: lsm= on its command line).
func landlockABI() (int, error) {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	switch {
	case errno == unix.ENOSYS:
		return 0, fmt.Errorf("this kernel has no Landlock (Linux 5.13 or later, CONFIG_SECURITY_LANDLOCK): %w", errno)
	case errno == unix.EOPNOTSUPP:
		return 0, fmt.Errorf("this kernel has Landlock disabled (landlock missing from /sys/kernel/security/lsm): %w", errno)
	case errno != 0:
		return 0, fmt.Errorf("landlock_create_ruleset: %w", errno)
	}
	return int(v), nil
}

// landlockRule is one path and what may be done beneath it.
type landlockRule struct {
	path   string
	access uint64
}

// landlockRules are s's rules, in the jail (after pivot): the jail's root
// may be read, and its files (the disks, the devices) written, which the
// mounts still limit (the root and read-only binds are read-only mounts);
// the VM's folder and the writable folders bound in may also get new
// files, sockets and folders; only the VMM binary may be executed.
// Everything else Landlock handles is refused: executing anything else,
// making device nodes, and any file outside the jail's root, should a
// descriptor or a mount ever lead there.
func landlockRules(s Spec) []landlockRule {
	rw := uint64(llRead | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE)
	rules := []landlockRule{
		{"/", rw},
		{s.Dir, rw | llMake | unix.LANDLOCK_ACCESS_FS_REFER},
		{ExePath, unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_READ_FILE},
	}
	for _, b := range s.Files {
		if fi, err := os.Stat(b.Path); err == nil && fi.IsDir() && !b.ReadOnly {
			rules = append(rules, landlockRule{b.Path, rw | llMake | unix.LANDLOCK_ACCESS_FS_REFER})
		}
	}
	return rules
}

// handledFor is the rights Landlock ABI abi refuses unless a rule allows
// them. IOCTL_DEV (ABI 5) is left alone: the VMM's ioctls on /dev/kvm,
// TAPs and block devices are seccomp's to filter, and a disk hot-added
// later has no rule. So are the newer network and socket rights: a VMM
// receiving a migration listens on TCP.
func handledFor(abi int) uint64 {
	h := llV1
	if abi >= 2 {
		h |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		h |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	return h
}

// confine restricts the calling thread, and the VMM it executes, with
// Landlock (landlock(7)) to s's rules, where the kernel has Landlock. It
// says what it did, for the VMM's log and status: "abi N: ..." or "off:
// why". Call it on the thread that executes the VMM, with no_new_privs
// set.
func confine(s Spec) (string, error) {
	abi, err := restrict(landlockRules(s))
	if err != nil {
		return "", err
	}
	if abi == 0 {
		_, why := landlockABI()
		return "off: " + why.Error(), nil
	}
	return fmt.Sprintf("abi %d: files only beneath the jail's root, new files only in %s, executes only %s", abi, s.Dir, ExePath), nil
}

// restrict applies rules to the calling thread and returns the Landlock
// ABI it used: 0, doing nothing, where the kernel has no Landlock.
func restrict(rules []landlockRule) (int, error) {
	abi, err := landlockABI()
	if abi == 0 {
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
			return 0, nil
		}
		return 0, err
	}
	handled := handledFor(abi)
	attr := unix.LandlockRulesetAttr{Handled_access_fs: handled}
	// The kernel takes a larger struct than it knows if the rest is zero
	// (copy_struct_from_user): x/sys's has the newest fields.
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return 0, fmt.Errorf("jail: landlock_create_ruleset: %w", errno)
	}
	defer unix.Close(int(fd))
	for _, r := range rules {
		if err := addRule(int(fd), r.path, r.access&handled); err != nil {
			return 0, err
		}
	}
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0); errno != 0 {
		return 0, fmt.Errorf("jail: landlock_restrict_self: %w", errno)
	}
	return abi, nil
}

// addRule allows access beneath path (for a file, on it alone: Landlock
// keeps only a file's own rights).
func addRule(ruleset int, path string, access uint64) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("jail: landlock rule for %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("jail: landlock rule for %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		// Directory rights on a file are EINVAL: keep the file's own.
		access &= unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	pb := unix.LandlockPathBeneathAttr{Allowed_access: access, Parent_fd: int32(fd)}
	// The kernel reads the packed struct (12 bytes), which x/sys's
	// layout begins with.
	if _, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&pb)), 0, 0, 0); errno != 0 {
		return fmt.Errorf("jail: landlock rule for %s: %w", filepath.Clean(path), errno)
	}
	return nil
}
