package node

import (
	"net"
	"os"
	"strings"
	"testing"
)

const tcpTable = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A2C4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
`

func TestListensOn(t *testing.T) {
	for _, c := range []struct {
		port int
		want bool
	}{
		{8080, true},   // 0x1F90, listening
		{41668, false}, // 0xA2C4, established only
		{22, false},
	} {
		if got := listensOn(strings.NewReader(tcpTable), c.port); got != c.want {
			t.Errorf("listensOn(%d) = %v, want %v", c.port, got, c.want)
		}
	}
	// A real listener of this process shows in /proc/<pid>/net/tcp.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if port := l.Addr().(*net.TCPAddr).Port; !ListensOn(os.Getpid(), port) {
		t.Errorf("ListensOn(self, %d) = false for a listening socket", port)
	}
}

// FuzzListensOn: any table text is scanned without a panic.
func FuzzListensOn(f *testing.F) {
	f.Add(tcpTable, 8080)
	f.Add("0: x:y 0A", 1)
	f.Add("", 0)
	f.Add("   0: :FFFFF 0 0A\n", 65535)
	f.Fuzz(func(t *testing.T, table string, port int) {
		listensOn(strings.NewReader(table), port)
	})
}
