package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// benchNet is a network namespace with one TAP (hostIP/16) for the guest,
// and a TCP sink inside it that takes tcpMiB MiB per connection.
type benchNet struct {
	ns   string
	l    net.Listener
	got  chan int64 // bytes each connection delivered
	size int64
}

func newBenchNet(tcpMiB int) (*benchNet, error) {
	n := &benchNet{ns: "gvbenchio" + strconv.Itoa(os.Getpid()), got: make(chan int64, 4), size: int64(tcpMiB) << 20}
	steps := [][]string{
		{"netns", "add", n.ns},
		{"-n", n.ns, "link", "set", "lo", "up"},
		{"-n", n.ns, "tuntap", "add", "dev", tapName, "mode", "tap"},
		{"-n", n.ns, "addr", "add", hostIP + "/16", "dev", tapName},
		{"-n", n.ns, "link", "set", tapName, "up"},
	}
	for i, st := range steps {
		if out, err := exec.Command("ip", st...).CombinedOutput(); err != nil {
			if i > 0 {
				n.close()
			}
			return nil, fmt.Errorf("ip %v: %v: %s (the network part needs root and iproute2)", st, err, out)
		}
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		f, err := os.Open("/var/run/netns/" + n.ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		n.l, err = net.Listen("tcp", net.JoinHostPort(hostIP, strconv.Itoa(tcpPort)))
		errc <- err
	}()
	if err := <-errc; err != nil {
		n.close()
		return nil, fmt.Errorf("listen in %s: %w", n.ns, err)
	}
	go n.sink()
	return n, nil
}

// sink reads size bytes from each connection, then closes it, which ends
// the guest's nc.
func (n *benchNet) sink() {
	for {
		c, err := n.l.Accept()
		if err != nil {
			return
		}
		k, _ := io.CopyN(io.Discard, c, n.size)
		c.Close()
		n.got <- k
	}
}

// wrap runs args inside the namespace.
func (n *benchNet) wrap(args []string) []string {
	return append([]string{"ip", "netns", "exec", n.ns}, args...)
}

func (n *benchNet) close() {
	if n.l != nil {
		n.l.Close()
	}
	exec.Command("ip", "netns", "del", n.ns).Run()
}

// check waits for the TCP stream the guest just sent and checks its size.
func (n *benchNet) check() error {
	select {
	case k := <-n.got:
		if k != n.size {
			return fmt.Errorf("the host received %d of %d TCP bytes", k, n.size)
		}
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("the guest's TCP stream never reached the host")
	}
}
