package cli

import (
	"bufio"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// consoleWriter batches guest console bytes: the UART hands them over one at
// a time, and a write(2) per byte would cost the guest time on every line.
// A line is written when it ends; bytes without a newline (a prompt) within
// flushDelay. The delay is a one-shot timer armed only while bytes wait,
// not a ticker: a VMM whose guest is quiet wakes for nothing (a 10 ms ticker
// cost 100 scheduler wake-ups a second, CPU time the vCPUs and the I/O
// workers lost on a loaded host).
type consoleWriter struct {
	mu     sync.Mutex
	w      *bufio.Writer
	timer  *time.Timer // flushes bytes left without a newline (mu)
	armed  bool        // timer pending (mu)
	closed bool        // (mu)
}

// flushDelay bounds how long console bytes without a newline wait.
const flushDelay = 10 * time.Millisecond

func newConsoleWriter(f io.Writer) *consoleWriter {
	c := &consoleWriter{w: bufio.NewWriterSize(f, 4096)}
	c.timer = time.AfterFunc(time.Hour, func() {
		c.mu.Lock()
		c.armed = false
		c.w.Flush()
		c.mu.Unlock()
	})
	c.timer.Stop()
	return c
}

func (c *consoleWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.w.Write(p)
	switch {
	case err != nil:
	case len(p) > 0 && p[len(p)-1] == '\n':
		err = c.w.Flush()
	case c.w.Buffered() > 0 && !c.armed && !c.closed:
		c.armed = true
		c.timer.Reset(flushDelay)
	}
	return n, err
}

// Flush writes out what is buffered.
func (c *consoleWriter) Flush() {
	c.mu.Lock()
	c.w.Flush()
	c.mu.Unlock()
}

// Close flushes and stops the flusher.
func (c *consoleWriter) Close() {
	c.mu.Lock()
	c.closed = true
	c.timer.Stop()
	c.w.Flush()
	c.mu.Unlock()
}

// hostConsole feeds host input to the guest's UART: raw mode on a terminal
// with the Ctrl-A X escape (as qemu -nographic), plain bytes from a pipe.
type hostConsole struct {
	in       *os.File
	tty      bool
	oldState *term.State
	quit     chan struct{}
	bytes    chan []byte
}

const escapeByte = 0x01 // Ctrl-A

func attachConsole(in *os.File) (*hostConsole, error) {
	c := &hostConsole{in: in, quit: make(chan struct{}), bytes: make(chan []byte, 16)}
	if term.IsTerminal(int(in.Fd())) {
		st, err := term.MakeRaw(int(in.Fd()))
		if err == nil {
			c.tty, c.oldState = true, st
		}
	}
	// One reader for the whole process (across guest reboots): reads from a
	// terminal or pipe cannot be cancelled, so they are never restarted.
	go func() {
		buf := make([]byte, 256)
		escaped := false
		for {
			n, err := in.Read(buf)
			if n > 0 {
				p := append([]byte(nil), buf[:n]...)
				if c.tty {
					p, escaped = c.filterEscape(p, escaped)
				}
				if len(p) > 0 {
					c.bytes <- p
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return c, nil
}

// filterEscape handles Ctrl-A X (quit) and Ctrl-A Ctrl-A (a literal Ctrl-A).
func (c *hostConsole) filterEscape(p []byte, escaped bool) ([]byte, bool) {
	out := p[:0]
	for _, b := range p {
		if escaped {
			escaped = false
			switch b {
			case 'x', 'X':
				select {
				case <-c.quit:
				default:
					close(c.quit)
				}
				return out, false
			case escapeByte:
				out = append(out, b)
			}
			continue
		}
		if b == escapeByte {
			escaped = true
			continue
		}
		out = append(out, b)
	}
	return out, escaped
}

func (c *hostConsole) restore() {
	if c.tty && c.oldState != nil {
		term.Restore(int(c.in.Fd()), c.oldState)
	}
}

// terminal is the guest's console on this process's stdin and stdout, as
// the VMM takes it (vmm.Console).
type terminal struct {
	*consoleWriter
	in *hostConsole
}

// Input delivers what is typed (or piped) for the guest.
func (t terminal) Input() <-chan []byte { return t.in.bytes }

// Quit is closed by Ctrl-A X on a terminal.
func (t terminal) Quit() <-chan struct{} { return t.in.quit }
