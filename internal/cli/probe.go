package cli

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/x86/cpuid"
)

// ProbeReport is what `govisor probe` finds out about this host's KVM.
type ProbeReport struct {
	Device       string          `json:"device"`
	Flavor       kvm.Flavor      `json:"flavor"`
	MaxVCPUs     int             `json:"max_vcpus"`
	MemSlots     int             `json:"memory_slots"`
	Capabilities map[string]bool `json:"capabilities"`
	CPUTemplate  string          `json:"cpu_template"`
	KernelArgs   string          `json:"kernel_args,omitempty"`
	CPUIDLeaves  int             `json:"supported_cpuid_entries"`
}

var probeCaps = []struct {
	name string
	c    int
}{
	{"irqchip", kvm.CapIRQChip}, {"pit2", kvm.CapPIT2}, {"ioeventfd", kvm.CapIOEventFD},
	{"irqfd", kvm.CapIRQFD}, {"signal_msi", kvm.CapSignalMSI}, {"vcpu_events", kvm.CapVCPUEvents},
	{"xsave", kvm.CapXSave}, {"xcrs", kvm.CapXCRs}, {"immediate_exit", kvm.CapImmediateExit},
	{"adjust_clock", kvm.CapAdjustClock}, {"kvmclock_ctrl", kvm.CapKVMClockCtrl},
	{"dirty_log_ring", kvm.CapDirtyLogRing}, {"manual_dirty_log_protect", kvm.CapManualDirtyLogProtect},
	{"tsc_control", kvm.CapTSCControl}, {"readonly_mem", kvm.CapReadonlyMem}, {"split_irqchip", kvm.CapSplitIRQChip},
	{"x2apic_api", kvm.CapX2APICAPI}, {"disable_exits", kvm.CapX86DisableExits},
}

// Probe inspects /dev/kvm.
func Probe() (ProbeReport, error) {
	sys, err := kvm.Open()
	if err != nil {
		return ProbeReport{}, err
	}
	defer sys.Close()
	r := ProbeReport{Device: kvm.DevicePath, Flavor: kvm.DetectFlavor(), Capabilities: map[string]bool{}}
	r.MaxVCPUs = sys.CheckExtension(kvm.CapMaxVCPUs)
	r.MemSlots = sys.CheckExtension(kvm.CapNrMemSlots)
	for _, c := range probeCaps {
		r.Capabilities[c.name] = sys.CheckExtension(c.c) != 0
	}
	t := cpuid.Host
	if r.Flavor == kvm.FlavorPVM {
		t = cpuid.PVM
	}
	r.CPUTemplate = t.Name
	r.KernelArgs = cpuid.KernelArgs(t)
	if ents, err := sys.SupportedCPUID(); err == nil {
		r.CPUIDLeaves = len(ents)
	}
	return r, nil
}

func newProbeCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Show what this host's KVM offers and the CPU template govisor would apply",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := Probe()
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			kind := "hardware-assisted KVM (VT-x/AMD-V)"
			if r.Flavor == kvm.FlavorPVM {
				kind = "kvm_pvm (software KVM: guest-kernel code is emulated)"
			}
			fmt.Printf("KVM:           %s at %s\n", kind, r.Device)
			fmt.Printf("max vCPUs:     %d\nmemory slots:  %d\n", r.MaxVCPUs, r.MemSlots)
			fmt.Printf("CPU template:  %s\n", r.CPUTemplate)
			if r.KernelArgs != "" {
				fmt.Printf("kernel args:   %s (appended to Linux command lines)\n", r.KernelArgs)
			}
			fmt.Printf("CPUID entries: %d supported\ncapabilities: ", r.CPUIDLeaves)
			for _, c := range probeCaps {
				mark := "-"
				if r.Capabilities[c.name] {
					mark = "+"
				}
				fmt.Printf(" %s%s", mark, c.name)
			}
			fmt.Println()
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
