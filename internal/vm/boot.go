package vm

import (
	"fmt"
	"strings"

	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/x86/acpi"
	"github.com/govisor/govisor/internal/x86/cpuid"
	"github.com/govisor/govisor/internal/x86/linuxboot"
	"github.com/govisor/govisor/internal/x86/mptable"
)

// e820 is the guest memory map the kernel sees: RAM, the EBDA holding the MP
// table, and the BIOS area holding the ACPI tables.
func (m *Machine) e820() []linuxboot.MemRegion {
	var out []linuxboot.MemRegion
	for _, r := range m.mem.Regions() {
		size := uint64(len(r.Host))
		if r.GPA == 0 {
			out = append(out,
				linuxboot.MemRegion{Start: 0, Size: mptable.Addr, Type: linuxboot.E820RAM},
				linuxboot.MemRegion{Start: mptable.Addr, Size: 0xA0000 - mptable.Addr, Type: linuxboot.E820Reserved},
				linuxboot.MemRegion{Start: acpi.Base, Size: acpi.Limit - acpi.Base, Type: linuxboot.E820Reserved},
				linuxboot.MemRegion{Start: 0x100000, Size: size - 0x100000, Type: linuxboot.E820RAM})
			continue
		}
		out = append(out, linuxboot.MemRegion{Start: r.GPA, Size: size, Type: linuxboot.E820RAM})
	}
	return out
}

// loadGuest writes the firmware tables and the kernel (or flat test image)
// and returns the state every vCPU that starts running enters with.
func (m *Machine) loadGuest() (entryState, error) {
	if len(m.cfg.Firmware) > 0 {
		return m.loadFirmware() // the firmware writes its own tables
	}
	if err := mptable.Write(m.mem, m.cfg.CPUs); err != nil {
		return entryState{}, fmt.Errorf("vm: MP table: %w", err)
	}
	acfg := acpi.DefaultConfig(m.cfg.CPUs)
	acfg.RTCCenturyIndex = 0x32
	acfg.HotplugSlots = m.hotplugSlots()
	rsdp, err := acpi.Write(m.mem, acfg)
	if err != nil {
		return entryState{}, fmt.Errorf("vm: ACPI tables: %w", err)
	}
	if f := m.cfg.Flat; f != nil {
		if _, err := m.mem.WriteAt(f.Code, int64(f.Addr)); err != nil {
			return entryState{}, fmt.Errorf("vm: flat image of %d bytes at %#x does not fit in guest RAM: %w", len(f.Code), f.Addr, err)
		}
		m.bootLog = fmt.Sprintf("flat image, %d bytes at %#x", len(f.Code), f.Addr)
		return entryState{rip: f.Addr}, nil
	}
	if len(m.cfg.Kernel) == 0 {
		return entryState{}, fmt.Errorf("vm: no kernel given: set kernel (a bzImage or vmlinux)")
	}
	cmdline := m.cfg.Cmdline
	if extra := cpuid.KernelArgs(m.template()); extra != "" {
		cmdline = strings.TrimSpace(cmdline + " " + extra)
	}
	ld, err := linuxboot.Load(m.mem, linuxboot.Config{
		Kernel:          m.cfg.Kernel,
		Initrd:          m.cfg.Initrd,
		Cmdline:         cmdline,
		Memory:          m.e820(),
		GuestDecompress: m.cfg.GuestDecompress,
		ACPIRSDP:        rsdp,
		PreferPVH:       m.cfg.Boot == BootPVH,
	})
	if err != nil {
		return entryState{}, err
	}
	m.bootLog = fmt.Sprintf("%s, entry %#x (%s), kernel %#x-%#x, initrd %d bytes at %#x, cmdline %q",
		ld.Format, ld.Entry, ld.Mode, ld.KernelStart, ld.KernelEnd, ld.InitrdSize, ld.InitrdAddr, cmdline)
	if ld.Mode == linuxboot.EntryPVH {
		return entryState{rip: ld.Entry, rbx: linuxboot.PVHStartInfoAddr, pvh: true}, nil
	}
	return entryState{rip: ld.Entry, rsi: linuxboot.BootParamsAddr}, nil
}

// template picks the CPU template: kvm_pvm needs the one that hides what its
// emulator cannot run; hardware KVM gets the host's features.
func (m *Machine) template() cpuid.Template {
	name := m.cfg.Template
	if name == "" || name == "auto" {
		name = "host"
		if m.flavor == kvm.FlavorPVM {
			name = "pvm"
		}
	}
	m.tmpl = name
	if name == "pvm" {
		return cpuid.PVM
	}
	return cpuid.Host
}

// createVCPUs creates the vCPUs with their CPUID; with boot set it also
// gives them their boot-time state (a restore loads saved state instead).
func (m *Machine) createVCPUs(entry entryState, boot bool) error {
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	in := make([]cpuid.Entry, len(supported))
	for i, e := range supported {
		in[i] = cpuid.Entry{Function: e.Function, Index: e.Index, Flags: e.Flags, EAX: e.EAX, EBX: e.EBX, ECX: e.ECX, EDX: e.EDX}
	}
	t := m.template()
	if m.cfg.CPUFeatures != nil {
		if !boot {
			// The guest already runs with these features (a snapshot or a
			// migration): a host without one of them cannot take it.
			if miss := cpuid.Missing(in, m.cfg.CPUFeatures); len(miss) > 0 {
				return fmt.Errorf("vm: this host's CPU (as KVM offers it) lacks %s, which the guest was started with: "+
					"restore or migrate it to a host that has them, or start it with the cluster's CPU baseline", strings.Join(miss, ", "))
			}
		}
		t = cpuid.Restricted(t, m.cfg.CPUFeatures)
	}
	vmCPUID, err := cpuid.Build(in, t, m.cfg.CPUs)
	if err != nil {
		return fmt.Errorf("vm: CPUID: %w", err)
	}
	m.cpuFeats = cpuid.Present(vmCPUID)
	for id := 0; id < m.cfg.CPUs; id++ {
		c, err := m.kvm.CreateVCPU(id)
		if err != nil {
			return err
		}
		m.runners = append(m.runners, &vcpuRunner{m: m, c: c})
		per := cpuid.ForVCPU(vmCPUID, id)
		out := make([]kvm.CPUIDEntry, len(per))
		for i, e := range per {
			out[i] = kvm.CPUIDEntry{Function: e.Function, Index: e.Index, Flags: e.Flags, EAX: e.EAX, EBX: e.EBX, ECX: e.ECX, EDX: e.EDX}
		}
		if err := c.SetCPUID(out); err != nil {
			return err
		}
		if !boot || len(m.cfg.Firmware) > 0 {
			continue // restored state, or the reset state firmware starts from
		}
		setBootMSRs(c)
		if err := setupLAPIC(c); err != nil {
			return err
		}
		// The BSP starts at the entry point; Linux wakes the APs itself with
		// INIT/SIPI through the in-kernel LAPIC. A flat test image runs on all.
		if id == 0 || m.cfg.Flat != nil {
			st := entry
			st.rdi = uint64(id)
			if err := setEntryState(c, st); err != nil {
				return err
			}
			if id != 0 {
				if err := c.SetMPState(kvm.MPStateRunnable); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
