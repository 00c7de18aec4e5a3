// Command govisor-agent is the govisor host agent (`govisor serve` runs it):
// VM state in an embedded or external etcd, the REST API, and one govisor
// VMM process per VM.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/internal/cli/cmdutil"
	"github.com/govisor/govisor/internal/cli/labcmd"
	"github.com/govisor/govisor/internal/cli/servecmd"
)

func main() {
	root := &cobra.Command{Use: "govisor-agent", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(servecmd.NewServeCmd(), labcmd.NewLabCmd())
	root.SetArgs(os.Args[1:])
	if err := root.Execute(); err != nil {
		var ee *cmdutil.ExitError
		if errors.As(err, &ee) {
			if ee.Err != nil {
				fmt.Fprintln(os.Stderr, "govisor:", ee.Err)
			}
			os.Exit(ee.Code)
		}
		fmt.Fprintln(os.Stderr, "govisor:", err)
		os.Exit(1)
	}
}
