package cli

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/internal/cli/termconsole"
)

// vmConsoleCmd is `govisor vm console NAME [--log]`.
func vmConsoleCmd(f *apiFlags) *cobra.Command {
	var logOnly bool
	var linger time.Duration
	cmd := &cobra.Command{
		Use:   "console NAME [--log]",
		Short: "Attach to a VM's serial console (Ctrl-] quits), or print its log with --log",
		Long: `Attach to a running VM's serial console over a WebSocket: what the guest
prints appears here and what you type goes to the guest. On a terminal the
session is raw and Ctrl-] ends it (the VM keeps running). With pipes, stdin
is sent and the guest's output is printed; at the end of stdin the session
ends once the guest has been quiet for --linger. --log prints the console
output so far instead (also for stopped VMs).`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: vmNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if logOnly {
				b, err := c.Console(cmd.Context(), args[0])
				if err != nil {
					return apiErr(err)
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			conn, err := c.AttachConsole(cmd.Context(), args[0])
			if err != nil {
				return apiErr(err)
			}
			defer conn.Close()
			return termconsole.Session(conn, os.Stdin, cmd.OutOrStdout(), linger)
		},
	}
	cmd.Flags().BoolVar(&logOnly, "log", false, "print the console output so far (the last MiB) and exit")
	cmd.Flags().DurationVar(&linger, "linger", time.Second, "with piped stdin: after its end, wait until the guest was quiet this long")
	return cmd
}
