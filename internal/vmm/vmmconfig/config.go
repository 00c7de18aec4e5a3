// Package vmmconfig is the configuration of one VMM process (`govisor
// run`): the machine to boot, restore or receive, its devices and the
// VMM's sockets. The host agent writes it as a JSON file and starts
// `govisor run --config FILE` (as Firecracker's --config-file); the flags
// of `govisor run` fill the same Config. The package is pure: it reads
// no device and links no VMM, so the agent can write configs without
// carrying the hypervisor.
package vmmconfig

// Defaults a config file gets for the fields it leaves out; Go callers
// get the same from Defaults. Zero values mean these defaults too, except
// for Cmdline (an empty command line is a command line).
const (
	DefaultCmdline     = "console=ttyS0"
	DefaultMemoryMiB   = 256
	DefaultBoot        = "linux64"
	DefaultOnReboot    = "restart"
	DefaultCPUTemplate = "auto"
)

// Config is everything one VMM process needs. Paths are used as given:
// relative ones are relative to the VMM's working directory (the agent
// starts each VMM in its VM's folder), as they are for flags.
type Config struct {
	// Kernel is the kernel image to boot: a bzImage or an ELF vmlinux.
	// Required unless Restore or Incoming is set; with them it is what a
	// guest reboot boots (without it a reboot ends the VMM).
	Kernel string `json:"kernel,omitempty"`
	// Firmware boots the first disk's own boot loader through firmware
	// instead of a kernel: "bios" (SeaBIOS) or "uefi" (OVMF).
	Firmware string `json:"firmware,omitempty"`
	// FirmwareImage is the firmware image file; empty looks for SeaBIOS's
	// bios-256k.bin (or, for uefi, OVMF_CODE_4M.fd) in
	// $GOVISOR_FIRMWARE_DIR, then /usr/share/seabios (/usr/share/OVMF).
	FirmwareImage string `json:"firmwareImage,omitempty"`
	// FirmwareVars is the VM's UEFI variable file (uefi only), made from
	// OVMF_VARS_4M.fd (found beside the code image) when missing; the
	// firmware's variables persist in it. Empty: a scratch copy that
	// lasts until the VMM exits.
	FirmwareVars string `json:"firmwareVars,omitempty"`
	// UUID is the machine's UUID, which firmware reports to the guest
	// (SMBIOS system information, as dmidecode and
	// /sys/class/dmi/id/product_uuid show it), 8-4-4-4-12 hex digits.
	// Firmware boots only; empty: none (all zeros).
	UUID string `json:"uuid,omitempty"`
	// Initrd is an initial ramdisk (cpio, optionally compressed).
	Initrd string `json:"initrd,omitempty"`
	// Cmdline is the kernel command line (DefaultCmdline when a config
	// file leaves it out).
	Cmdline string `json:"cmdline"`
	// CPUs is the number of vCPUs. 0 means 1 when booting; on an incoming
	// migration it means "as the source", while a count given lets the
	// VMM build the machine before the migration starts (less downtime).
	CPUs int `json:"cpus,omitempty"`
	// MemoryMiB is the guest's RAM in MiB (0: DefaultMemoryMiB). An
	// incoming migration over a Unix socket needs the source's size.
	MemoryMiB uint64 `json:"memoryMiB,omitempty"`
	// Boot is the kernel's entry protocol: linux64 (the 64-bit boot
	// protocol, the default) or pvh.
	Boot string `json:"boot,omitempty"`
	// GuestDecompress lets the guest decompress a bzImage instead of the
	// host unpacking it.
	GuestDecompress bool `json:"guestDecompress,omitempty"`
	// OnReboot is what a guest reboot does: restart (the default) boots
	// the kernel again, exit ends the VMM with status 0.
	OnReboot string `json:"onReboot,omitempty"`
	// CPUTemplate is the CPU model the guest sees: auto (the default),
	// host or pvm.
	CPUTemplate string `json:"cpuTemplate,omitempty"`
	// CPUFeatures, if set, are the only CPU features the guest sees, as
	// /proc/cpuinfo names them: the cluster's CPU baseline, so that the VM
	// can move to any of its hosts.
	CPUFeatures []string `json:"cpuFeatures,omitempty"`
	// DebugExit enables the isa-debug-exit port 0xf4: a guest write ends
	// the VMM with that value as its exit status.
	DebugExit bool `json:"debugExit,omitempty"`
	// Verbose prints how the guest was loaded and why it stopped.
	Verbose bool `json:"verbose,omitempty"`
	// Disks are virtio-blk disks, in PCI slot order. On an incoming
	// migration they are the blank mirror targets of a disk-mirroring
	// migration.
	Disks []Disk `json:"disks,omitempty"`
	// RNG adds a virtio-rng device fed by the host's getrandom.
	RNG bool `json:"rng,omitempty"`
	// Nets are virtio-net interfaces on TAP devices (created if missing).
	Nets []Net `json:"nets,omitempty"`
	// Vsock adds a virtio-vsock device.
	Vsock *Vsock `json:"vsock,omitempty"`
	// Balloon adds a virtio-balloon device (the API sets its size).
	Balloon bool `json:"balloon,omitempty"`
	// APISock serves the VMM control API (pause, resume, snapshot,
	// migrate, stop, ...) on this Unix socket.
	APISock string `json:"apiSock,omitempty"`
	// ConsoleSock also serves the serial console on this Unix socket:
	// every client sees the guest's output and its input goes to the
	// guest.
	ConsoleSock string `json:"consoleSock,omitempty"`
	// Restore starts from the snapshot in this folder instead of booting.
	Restore string `json:"restore,omitempty"`
	// Incoming waits for a live migration on this address instead of
	// booting: HOST:PORT (TCP), or unix:PATH for a source VMM on this host
	// (whose vsock connections then stay open).
	Incoming string `json:"incoming,omitempty"`
	// TLS requires mutual TLS of the source of a TCP Incoming migration.
	TLS *TLS `json:"tls,omitempty"`
	// FenceTTLMS arms the self-fencing watchdog (package fence) at start:
	// unless the control API's PUT /fence feeds it within this many
	// milliseconds (and then within each TTL it gives), the VMM stops its
	// guest and ends with ExitFenced. The host agent arms the VMs that HA
	// may restart elsewhere. 0: not armed (the API can still arm it).
	FenceTTLMS int `json:"fenceTTLMS,omitempty"`
	// FenceDeadlineMonoNS arms the watchdog at start up to this
	// CLOCK_MONOTONIC time in nanoseconds instead (fence.MonoNow): the
	// agent's deadline then holds however long the VMM takes to start.
	FenceDeadlineMonoNS int64 `json:"fenceDeadlineMonoNS,omitempty"`
	// LeaseOwner ("HOST/VM") makes the VMM hold a disk lease (package
	// disklease) on every disk with Lease set, taken before the guest
	// starts: no second VMM opens those disks while this one runs. A lease
	// it loses stops the guest, as the watchdog does.
	LeaseOwner string `json:"leaseOwner,omitempty"`
	// AdoptLeases makes an incoming VMM (shared storage) take over the
	// source's disk leases at the handover, before its guest runs.
	AdoptLeases *AdoptLeases `json:"adoptLeases,omitempty"`
	// Jail starts the VMM jailed (package jail; see Jail).
	Jail *Jail `json:"jail,omitempty"`
	// Seccomp is the VMM's syscall filter (package seccomp): kill (the
	// VMM ends at its first syscall off the allow-list), log, or off (the
	// default).
	Seccomp string `json:"seccomp,omitempty"`
}

// ExitFenced is the VMM's exit status when it stopped its guest because
// its watchdog was not fed or it lost a disk lease.
const ExitFenced = 3

// MaxFenceTTLMS bounds FenceTTLMS (10 minutes).
const MaxFenceTTLMS = 600000

// Disk is a virtio-blk disk.
type Disk struct {
	// Path is the image file (raw, qcow2, vmdk, vhd, vhdx or vdi).
	Path string `json:"path"`
	// ReadOnly shows the guest a read-only disk.
	ReadOnly bool `json:"readOnly,omitempty"`
	// Direct bypasses the host page cache (raw images only).
	Direct bool `json:"direct,omitempty"`
	// Format names the image format; empty probes the file.
	Format string `json:"format,omitempty"`
	// Serial is the disk's serial number (default: its name, vda, vdb...).
	Serial string `json:"serial,omitempty"`
	// Queues is the number of request queues, 1 to MaxDiskQueues (0: 1).
	Queues int `json:"queues,omitempty"`
	// Lease holds a disk lease on the image for LeaseOwner (disks on
	// shared storage that another host could open).
	Lease bool `json:"lease,omitempty"`
	// LeaseSeen is what an observer saw of the lease's record before this
	// start (disklease.Seen): a dead holder's lease is then watched only
	// for the rest of its expiry.
	LeaseSeen *LeaseSeen `json:"leaseSeen,omitempty"`
}

// LeaseSeen is a disk lease record's checksum and for how long an
// observer saw it unchanged.
type LeaseSeen struct {
	Sum   uint32 `json:"sum"`
	ForMS int64  `json:"forMS"`
}

// MaxDiskQueues is the most request queues a disk may have.
const MaxDiskQueues = 16

// Net is a virtio-net interface on a TAP device.
type Net struct {
	// TAP is the TAP device's name (at most 15 characters).
	TAP string `json:"tap"`
	// MAC is the interface's MAC address (aa:bb:cc:dd:ee:ff); empty picks one.
	MAC string `json:"mac,omitempty"`
}

// Vsock is a virtio-vsock device. The host connects to UDS and sends
// "CONNECT <port>\n"; guest connections to port P reach UDS_P.
type Vsock struct {
	// CID is the guest's context ID, 3 or more.
	CID uint64 `json:"cid"`
	// UDS is the Unix socket path host connections go through.
	UDS string `json:"uds"`
}

// TLS is the mutual TLS an incoming migration over TCP requires.
type TLS struct {
	// Cert is the certificate this VMM presents (PEM).
	Cert string `json:"cert"`
	// Key is the private key of Cert (PEM).
	Key string `json:"key"`
	// CA is the CA bundle (PEM) that must have signed the source's
	// certificate.
	CA string `json:"ca"`
}

// Defaults returns a Config holding only the defaults: what a config
// file's left-out fields get.
func Defaults() Config {
	return Config{Cmdline: DefaultCmdline, MemoryMiB: DefaultMemoryMiB, Boot: DefaultBoot,
		OnReboot: DefaultOnReboot, CPUTemplate: DefaultCPUTemplate}
}

// WithDefaults returns c with its zero values replaced by the defaults
// (Cmdline excepted; CPUs stays 0 on an incoming migration, where 0
// means "as the source").
func (c Config) WithDefaults() Config {
	if c.CPUs == 0 && c.Incoming == "" {
		c.CPUs = 1
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = DefaultMemoryMiB
	}
	if c.Boot == "" {
		c.Boot = DefaultBoot
	}
	if c.OnReboot == "" {
		c.OnReboot = DefaultOnReboot
	}
	if c.CPUTemplate == "" {
		c.CPUTemplate = DefaultCPUTemplate
	}
	return c
}

// AdoptLeases is the disk leases a live migration's destination takes over
// from its source (disklease.Adopt): the source hands them to LeaseOwner
// with Nonce right before the guest may run here.
type AdoptLeases struct {
	// Disks are the source's leased disk images (shared storage).
	Disks []string `json:"disks"`
	// Nonce is the number the source's handover and this adoption share.
	Nonce uint64 `json:"nonce"`
}
