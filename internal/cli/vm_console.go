package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// consoleQuitKey ends an interactive console session (Ctrl-], as telnet
// and virsh console have it).
const consoleQuitKey = 0x1d

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
			return consoleSession(conn, os.Stdin, cmd.OutOrStdout(), linger)
		},
	}
	cmd.Flags().BoolVar(&logOnly, "log", false, "print the console output so far (the last MiB) and exit")
	cmd.Flags().DurationVar(&linger, "linger", time.Second, "with piped stdin: after its end, wait until the guest was quiet this long")
	return cmd
}

// consoleSession copies in to conn and conn to out. On a terminal, in is
// switched to raw mode and Ctrl-] ends the session; otherwise the end of in
// ends it once conn has been quiet for linger. It also ends when the
// console closes (the VM stopped).
func consoleSession(conn io.ReadWriter, in *os.File, out io.Writer, linger time.Duration) error {
	tty := term.IsTerminal(int(in.Fd()))
	if tty {
		st, err := term.MakeRaw(int(in.Fd()))
		if err != nil {
			return fmt.Errorf("console: raw terminal: %w", err)
		}
		defer term.Restore(int(in.Fd()), st)
		fmt.Fprint(out, "Connected to the serial console; Ctrl-] quits.\r\n")
	}
	outDone := make(chan error, 1)
	activity := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				if _, werr := out.Write(buf[:n]); werr != nil {
					outDone <- werr
					return
				}
				select {
				case activity <- struct{}{}:
				default:
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				outDone <- err
				return
			}
		}
	}()
	inDone := make(chan error, 1)
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := in.Read(buf)
			p := buf[:n]
			quit := false
			if tty {
				if i := bytes.IndexByte(p, consoleQuitKey); i >= 0 {
					p, quit = p[:i], true
				}
			}
			if len(p) > 0 {
				if _, werr := conn.Write(p); werr != nil {
					inDone <- werr
					return
				}
			}
			if quit {
				inDone <- errQuit
				return
			}
			if err != nil {
				inDone <- nil // end of input
				return
			}
		}
	}()
	select {
	case err := <-outDone:
		return err
	case err := <-inDone:
		if errors.Is(err, errQuit) {
			if tty {
				fmt.Fprint(out, "\r\n")
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
	// End of piped input: print what the guest still answers.
	for {
		select {
		case err := <-outDone:
			return err
		case <-activity:
		case <-time.After(linger):
			return nil
		}
	}
}

// errQuit is the quit key's end of a session.
var errQuit = errors.New("console: quit")

// ConsoleSession attaches the terminal (or pipes) to a serial console
// connection, as `govisor vm console` does; Ctrl-] quits on a terminal.
func ConsoleSession(conn io.ReadWriter, in *os.File, out io.Writer, linger time.Duration) error {
	return consoleSession(conn, in, out, linger)
}
