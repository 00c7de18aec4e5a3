// Command vsockpeer is the guest side of govisor's vsock tests: it runs
// inside the test guest (built with GOOS=linux, added to its initramfs).
//
//	vsockpeer serve PORT    accept one connection, read 1 MiB, send 1 MiB back
//	vsockpeer connect PORT  connect to the host (CID 2), send 1 MiB, read 1 MiB
//	vsockpeer count-serve PORT    accept one connection, then count on it
//	vsockpeer count-connect PORT  connect to the host, then count on it
//
// serve and connect print "VSOCK-RX <sha256 of what it read>"; the bytes
// they send are Pattern("guest"). Counting sends "1\n", "2\n", ... every
// 100 ms and expects each line echoed back before the next, for as long as
// the connection lasts (a live migration must not end it), then prints
// "VSOCK-COUNT-END <mode> <last echoed> <why>".
package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Size is how much each side sends.
const Size = 1 << 20

// Pattern is the deterministic data a side sends.
func Pattern(seed string) []byte {
	b := make([]byte, Size)
	for i := range b {
		b[i] = byte((i*7 + len(seed)*13 + int(seed[0])) % 251)
	}
	return b
}

type fdConn int

func (f fdConn) Read(p []byte) (int, error) {
	n, err := unix.Read(int(f), p)
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	if n < 0 {
		n = 0
	}
	return n, err
}

func (f fdConn) Write(p []byte) (int, error) {
	total := 0
	for total < len(p) {
		n, err := unix.Write(int(f), p[total:])
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

func exchange(c fdConn, sendFirst bool) error {
	out := Pattern("guest")
	if sendFirst {
		if _, err := c.Write(out); err != nil {
			return err
		}
	}
	in := make([]byte, Size)
	if _, err := io.ReadFull(c, in); err != nil {
		return err
	}
	fmt.Printf("VSOCK-RX %x\n", sha256.Sum256(in))
	if !sendFirst {
		if _, err := c.Write(out); err != nil {
			return err
		}
	}
	return nil
}

// count runs the counter on c until the connection fails.
func count(fd int, mode string) {
	var line []byte
	b := make([]byte, 1)
	i := 0
	for {
		out := []byte(strconv.Itoa(i+1) + "\n")
		// MSG_NOSIGNAL: a reset connection fails the send, no SIGPIPE.
		if err := unix.Sendto(fd, out, unix.MSG_NOSIGNAL, nil); err != nil {
			fmt.Printf("VSOCK-COUNT-END %s %d send: %v\n", mode, i, err)
			return
		}
		for line = line[:0]; ; {
			n, err := unix.Read(fd, b)
			if n <= 0 || err != nil {
				fmt.Printf("VSOCK-COUNT-END %s %d read: %v (n=%d)\n", mode, i, err, n)
				return
			}
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
		}
		if string(line)+"\n" != string(out) {
			fmt.Printf("VSOCK-COUNT-BAD %s sent %q, got %q back\n", mode, out, line)
			return
		}
		i++
		if i == 1 {
			fmt.Printf("VSOCK-COUNTING %s\n", mode)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: vsockpeer serve|connect|count-serve|count-connect PORT")
		os.Exit(2)
	}
	port, err := strconv.ParseUint(os.Args[2], 10, 32)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad port:", err)
		os.Exit(2)
	}
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "socket:", err)
		os.Exit(1)
	}
	switch os.Args[1] {
	case "serve", "count-serve":
		if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: uint32(port)}); err != nil {
			fmt.Fprintln(os.Stderr, "bind:", err)
			os.Exit(1)
		}
		if err := unix.Listen(fd, 1); err != nil {
			fmt.Fprintln(os.Stderr, "listen:", err)
			os.Exit(1)
		}
		fmt.Println("VSOCK-LISTENING")
		c, _, err := unix.Accept(fd)
		if err != nil {
			fmt.Fprintln(os.Stderr, "accept:", err)
			os.Exit(1)
		}
		if os.Args[1] == "count-serve" {
			count(c, "serve")
			break
		}
		err = exchange(fdConn(c), false)
		unix.Close(c)
		if err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
	case "connect", "count-connect":
		// Linux gives a vsock connect 2 s (af_vsock.c,
		// VSOCK_DEFAULT_CONNECT_TIMEOUT) to be answered; a loaded lab host
		// (a TCG-emulated machine running a nested guest) can take longer
		// to schedule the VMM's answer, and the peer then gave up
		// (ETIMEDOUT) with nothing wrong but time.
		tv := unix.Timeval{Sec: 60}
		if err := unix.SetsockoptTimeval(fd, unix.AF_VSOCK, unix.SO_VM_SOCKETS_CONNECT_TIMEOUT, &tv); err != nil {
			fmt.Fprintln(os.Stderr, "connect timeout:", err)
		}
		if err := unix.Connect(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_HOST, Port: uint32(port)}); err != nil {
			fmt.Fprintln(os.Stderr, "connect:", err)
			os.Exit(1)
		}
		if os.Args[1] == "count-connect" {
			count(fd, "connect")
			break
		}
		if err := exchange(fdConn(fd), true); err != nil {
			fmt.Fprintln(os.Stderr, "connect:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: vsockpeer serve|connect PORT")
		os.Exit(2)
	}
	unix.Close(fd)
}
