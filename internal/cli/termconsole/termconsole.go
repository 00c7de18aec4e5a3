// Package termconsole attaches a terminal, or pipes, to a serial console
// connection: `govisor vm console` (a VM's console over the API) and
// `govisor lab console` (a lab host's) both use it.
package termconsole

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"
)

// quitKey ends an interactive session (Ctrl-], as telnet and virsh console
// have it).
const quitKey = 0x1d

// Session copies in to conn and conn to out. On a terminal, in is
// switched to raw mode and Ctrl-] ends the session; otherwise the end of in
// ends it once conn has been quiet for linger. It also ends when the
// console closes (the VM stopped).
func Session(conn io.ReadWriter, in *os.File, out io.Writer, linger time.Duration) error {
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
				if i := bytes.IndexByte(p, quitKey); i >= 0 {
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
