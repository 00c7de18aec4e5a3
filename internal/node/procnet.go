package node

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
)

// tcpListenState is st 0A (TCP_LISTEN) in /proc/net/tcp (proc(5)).
const tcpListenState = "0A"

// listensOn reports whether a table in the format of /proc/net/tcp or
// /proc/net/tcp6 has a socket listening on port (any address). Lines that
// do not parse are skipped.
func listensOn(table io.Reader, port int) bool {
	sc := bufio.NewScanner(table)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local_address rem_address st ...
		if len(f) < 4 || f[3] != tcpListenState {
			continue
		}
		i := strings.LastIndexByte(f[1], ':')
		if i < 0 {
			continue
		}
		p, err := strconv.ParseUint(f[1][i+1:], 16, 16)
		if err == nil && int(p) == port {
			return true
		}
	}
	return false
}

// ListensOn reports whether a socket in pid's network namespace listens
// on the TCP port: how the agent knows a destination VMM is ready for the
// migration stream without connecting to it (a connection would be taken
// for the stream).
func ListensOn(pid, port int) bool {
	for _, t := range []string{"tcp", "tcp6"} {
		f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/net/" + t)
		if err != nil {
			continue
		}
		ok := listensOn(f, port)
		f.Close()
		if ok {
			return true
		}
	}
	return false
}
