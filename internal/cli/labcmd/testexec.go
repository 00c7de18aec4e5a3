package labcmd

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/govisor/govisor/internal/cli/cmdutil"
	"github.com/govisor/govisor/internal/lab"
	"github.com/spf13/cobra"
)

func newTestExecCmd(cache *string) *cobra.Command {
	return &cobra.Command{
		Use:    "testexec TESTBINARY [ARGS...]",
		Short:  "Run a go test binary, in a lab host when it has KVM tests and this machine has no hardware-assisted /dev/kvm (go test -exec)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		// Every argument belongs to the test binary.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			bin := args[0]
			needs, err := lab.NeedsKVM(bin)
			if err != nil {
				return err
			}
			if !needs || lab.PickAccel().Accel == "kvm" {
				// Run it here, as go test would (hardware KVM, or no KVM tests).
				return syscall.Exec(bin, args, os.Environ())
			}
			c, err := filepath.Abs(*cache)
			if err != nil {
				return err
			}
			guest := os.Getenv("GOVISOR_GUEST_DIR")
			if guest == "" {
				guest = filepath.Join(c, "guest")
			}
			rc, err := lab.RunTest(lab.TestExec{
				Cache:    c,
				BinDir:   os.Getenv("GOVISOR_TEST_BINDIR"),
				GuestDir: guest,
				Tally:    os.Getenv("GOVISOR_KVM_TALLY"),
				Package:  packageOf(),
				Stdout:   os.Stdout,
				Stderr:   os.Stderr,
			}, bin, args[1:])
			if err != nil {
				fmt.Fprintln(os.Stderr, "govisor:", err)
				if rc == 0 {
					rc = 1
				}
			}
			return &cmdutil.ExitError{Code: rc}
		},
	}
}

// packageOf names the package go test runs in the current folder (its
// folder relative to the module root).
func packageOf() string {
	wd, err := os.Getwd()
	if err != nil {
		return "?"
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			rel, _ := filepath.Rel(d, wd)
			return "./" + rel
		}
		if d == filepath.Dir(d) {
			return wd
		}
	}
}
