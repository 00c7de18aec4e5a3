// Package cli implements the govisor command line, one file per subcommand.
package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/internal/cli/cmdutil"
	"github.com/govisor/govisor/internal/cli/uicmd"
)

// ExitError carries a process exit code out of a subcommand (cmdutil's,
// which the agent binary's commands share without linking this package).
type ExitError = cmdutil.ExitError

// NewRootCmd builds the govisor command tree.
func NewRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "govisor",
		Short:         "govisor: a KVM hypervisor and virtualization platform",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	img := NewImageCmd()
	img.AddCommand(newImportOVACmd())
	root.AddCommand(newRunCmd(), newProbeCmd(), img, newCtlCmd())
	root.AddCommand(newServeExecCmd(), newVMCmd(), newHostCmd(), newClusterCmd(), newEventsCmd())
	root.AddCommand(newNetCmd(), newPoolCmd(), newVolumeCmd())
	root.AddCommand(newAuditCmd(), newTokenCmd())
	root.AddCommand(newImportCmd(), newExportCmd())
	root.AddCommand(newReportCmd(), newLabExecCmd(), newLabHoldKVMCmd(), uicmd.NewUICmd(), newJailExecCmd())
	return root
}

// Main runs the CLI with args and returns the process exit code.
func Main(args []string) int {
	root := NewRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintln(os.Stderr, "govisor:", ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintln(os.Stderr, "govisor:", err)
	return 1
}
