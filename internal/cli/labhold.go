package cli

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/internal/kvm"
)

// newLabHoldKVMCmd is `govisor lab-hold-kvm`, which a lab host's /init
// runs for its whole life. It holds one idle VM with an in-kernel irqchip
// and a vCPU, so the static keys KVM flips when the first VM or vCPU comes
// and the last one goes (preempt_notifier_key in finish_task_switch, the
// LAPIC's apic_hw/sw_disabled) never flip again while tests come and go.
// Flipping one patches live kernel text (text_poke_bp: int3, then the new
// bytes); under QEMU's multi-threaded TCG a vCPU can keep running the stale
// int3 (seen: an "int3" oops in finish_task_switch on a 6.12 lab kernel).
// It did not end the rarer "corrupted stack end detected inside
// scheduler" panics of the 6.1 lab kernel. Real hosts never need it.
func newLabHoldKVMCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "lab-hold-kvm",
		Short:  "Inside a lab host: hold one idle VM so KVM's static keys never flip (a TCG workaround)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sys, err := kvm.Open()
			if err != nil {
				return err
			}
			vm, err := sys.CreateVM()
			if err != nil {
				return fmt.Errorf("lab-hold-kvm: %w", err)
			}
			if err := vm.CreateIRQChip(); err != nil {
				return fmt.Errorf("lab-hold-kvm: %w", err)
			}
			if _, err := vm.CreateVCPU(0); err != nil {
				return fmt.Errorf("lab-hold-kvm: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "LAB-KVM-HELD")
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
			<-sigs
			return nil
		},
	}
}
