package jail

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/govisor/govisor/internal/hostcpu"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// Host paths that ForVMM checks for; variables so tests can point them
// elsewhere.
var (
	devKVM         = "/dev/kvm"
	devTUN         = "/dev/net/tun"
	devUserfaultfd = "/dev/userfaultfd"
	pvmModule      = hostcpu.PVMModule
)

// ForVMM plans the jail of the VMM config cfg (cfg.Jail set), whose
// relative paths are relative to cwd. snapDisks are the disks a snapshot
// being restored reopens (vm.SnapshotConfig). It returns the jail and the
// config the jailed VMM runs: absolute paths (but for the sockets, which
// stay relative when the working directory is in the VM's folder: a Unix
// socket's path has at most 108 bytes), no Jail.
func ForVMM(cfg vmmconfig.Config, cwd string, snapDisks []string) (Spec, vmmconfig.Config, error) {
	j := cfg.Jail
	if j == nil {
		return Spec{}, cfg, fmt.Errorf("jail: the config has no jail")
	}
	s := Spec{ID: j.ID, Instance: j.Instance, UID: j.UID, GID: j.GID, Dir: filepath.Clean(j.Dir), Devices: []string{devKVM}}
	if s.UID == 0 || s.GID == 0 {
		uid, gid := IDs(j.ID)
		if s.UID == 0 {
			s.UID = uid
		}
		if s.GID == 0 {
			s.GID = gid
		}
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(cwd, p)
	}
	s.Cwd = s.Dir
	if within(s.Dir, cwd) {
		s.Cwd = cwd
	}
	// sock keeps a socket path relative where the jail's working
	// directory is the host's, and checks it is in the VM's folder.
	sock := func(field, p string) (string, error) {
		if p == "" {
			return p, nil
		}
		if !within(s.Dir, abs(p)) {
			return "", fmt.Errorf("jail: %s %s is outside the VM's folder %s, the only folder the jailed VMM can write: put it there", field, p, s.Dir)
		}
		if !filepath.IsAbs(p) && s.Cwd != cwd {
			return abs(p), nil
		}
		return p, nil
	}
	out := cfg
	out.Jail = nil
	var err error
	if out.APISock, err = sock("apiSock", cfg.APISock); err != nil {
		return Spec{}, cfg, err
	}
	if out.ConsoleSock, err = sock("consoleSock", cfg.ConsoleSock); err != nil {
		return Spec{}, cfg, err
	}
	if path, ok := strings.CutPrefix(cfg.Incoming, vmmconfig.UnixPrefix); ok {
		if path, err = sock("incoming", path); err != nil {
			return Spec{}, cfg, err
		}
		out.Incoming = vmmconfig.UnixPrefix + path
	}
	if cfg.Vsock != nil {
		v := *cfg.Vsock
		if v.UDS, err = sock("vsock.uds", v.UDS); err != nil {
			return Spec{}, cfg, err
		}
		out.Vsock = &v
	}
	ro := func(p string) string {
		if p = abs(p); p != "" && !within(s.Dir, p) {
			s.Files = append(s.Files, Bind{Path: p, ReadOnly: true})
		}
		return p
	}
	out.Kernel, out.Initrd = ro(cfg.Kernel), ro(cfg.Initrd)
	if cfg.Firmware != "" && cfg.FirmwareImage == "" {
		// Found here, outside the jail, where the host's files are.
		if out.FirmwareImage, err = vmmconfig.FindFirmware(cfg.Firmware); err != nil {
			return Spec{}, cfg, err
		}
	}
	out.FirmwareImage = ro(out.FirmwareImage)
	if cfg.Firmware == vmmconfig.FirmwareUEFI {
		// The variable file is made here, from the template beside the
		// code (the jail sees neither), then reached like a writable
		// disk. Without one the jailed VMM makes a scratch copy in its
		// own /tmp, from the template it is given read-only.
		if out.FirmwareVars = abs(cfg.FirmwareVars); out.FirmwareVars != "" {
			if err := vmmconfig.PrepareVars(out.FirmwareVars, out.FirmwareImage); err != nil {
				return Spec{}, cfg, err
			}
			s.addDisk(out.FirmwareVars, false)
		} else if tmpl, err := vmmconfig.VarsTemplate(out.FirmwareImage); err == nil {
			ro(tmpl)
		}
	}
	if cfg.TLS != nil {
		t := *cfg.TLS
		t.Cert, t.Key, t.CA = ro(t.Cert), ro(t.Key), ro(t.CA)
		out.TLS = &t
	}
	out.Restore = ro(cfg.Restore)
	if out.Restore != "" {
		// The snapshot's files belong to this VM; another jail (another
		// uid) may have written them.
		s.Chown = append(s.Chown, out.Restore)
		if ents, err := os.ReadDir(out.Restore); err == nil {
			for _, e := range ents {
				s.Chown = append(s.Chown, filepath.Join(out.Restore, e.Name()))
			}
		}
	}
	out.Disks = append([]vmmconfig.Disk(nil), cfg.Disks...)
	for i := range out.Disks {
		d := &out.Disks[i]
		d.Path = abs(d.Path)
		s.addDisk(d.Path, d.ReadOnly)
	}
	for _, p := range snapDisks {
		s.addDisk(abs(p), false)
	}
	for _, p := range j.Files {
		if _, err := os.Stat(abs(p)); err == nil {
			s.addDisk(abs(p), false)
		}
	}
	if len(cfg.Nets) > 0 {
		s.Devices = append(s.Devices, devTUN)
	}
	if _, err := os.Stat(devUserfaultfd); err == nil {
		s.Devices = append(s.Devices, devUserfaultfd) // post-copy migration
	}
	if _, err := os.Stat(pvmModule); err == nil {
		s.Empty = append(s.Empty, pvmModule) // hostcpu.SoftwareKVM looks for it
	}
	return s, out, nil
}

// addDisk binds a disk image, given to the jail's uid if the guest may
// write it.
func (s *Spec) addDisk(p string, readOnly bool) {
	for _, b := range s.Files {
		if b.Path == p {
			return
		}
	}
	if !within(s.Dir, p) {
		s.Files = append(s.Files, Bind{Path: p, ReadOnly: readOnly})
	} else {
		// The folders between the VM's folder and the disk (the agent's
		// disks/ of mirrored copies) must let the uid through.
		for d := filepath.Dir(p); d != s.Dir && within(s.Dir, d); d = filepath.Dir(d) {
			s.Chown = append(s.Chown, d)
		}
	}
	if !readOnly {
		s.Chown = append(s.Chown, p)
	}
}

// within reports whether path is dir or below it.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
