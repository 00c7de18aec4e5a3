// Package cli implements the govisor command line, one file per subcommand.
package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// ExitError carries a process exit code out of a subcommand.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

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
	root.AddCommand(newServeExecCmd(), newVMCmd(), newHostCmd())
	root.AddCommand(newNetCmd(), newPoolCmd(), newVolumeCmd())
	root.AddCommand(newReportCmd(), newLabExecCmd(), newLabHoldKVMCmd())
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
