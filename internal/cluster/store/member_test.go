package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
)

func TestMemberCheck(t *testing.T) {
	const ic = "n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380,n3=http://10.0.0.3:2380"
	eps := []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"}
	cases := []struct {
		name     string
		m        Member
		eps      []string
		flag     string // "" = valid
		msg      string // part of the message
		peer, cl string // filled in, when valid
	}{
		{"defaults", Member{Name: "n2", InitialCluster: ic}, eps, "", "", "http://10.0.0.2:2380", "http://10.0.0.2:2379"},
		{"explicit", Member{Name: "n1", PeerURL: "http://10.0.0.1:2380/", ClientURL: "http://10.0.0.1:2379", InitialCluster: " n1 = http://10.0.0.1:2380 ,n2=http://10.0.0.2:2380,n3=http://10.0.0.3:2380,"}, eps, "", "", "http://10.0.0.1:2380", "http://10.0.0.1:2379"},
		{"one member", Member{Name: "a", InitialCluster: "a=http://127.0.0.1:7001"}, []string{"http://127.0.0.1:7000"}, "", "", "http://127.0.0.1:7001", "http://127.0.0.1:7000"},
		{"empty cluster", Member{Name: "n1", InitialCluster: " , "}, eps, flagInitial, "empty", "", ""},
		{"election timeout", Member{Name: "n2", InitialCluster: ic, ElectionTimeout: 2 * time.Second}, eps, "", "", "http://10.0.0.2:2380", "http://10.0.0.2:2379"},
		{"election timeout too short", Member{Name: "n2", InitialCluster: ic, ElectionTimeout: 50 * time.Millisecond}, eps, flagElection, "out of range: give 100ms to 50s", "", ""},
		{"election timeout too long", Member{Name: "n2", InitialCluster: ic, ElectionTimeout: time.Minute}, eps, flagElection, "out of range", "", ""},
		{"no peer URL", Member{Name: "n1", InitialCluster: "n1=http://10.0.0.1:2380,x"}, eps, flagInitial, `member "x" has no peer URL: write NAME=http://IP:PORT`, "", ""},
		{"empty peer URL", Member{Name: "n1", InitialCluster: "n1="}, eps, flagInitial, `member "n1" has no peer URL`, "", ""},
		{"no name", Member{Name: "n1", InitialCluster: "http://10.0.0.1:2380"}, eps, flagInitial, "has no member name", "", ""},
		{"no port", Member{Name: "n1", InitialCluster: "n1=http://10.0.0.1"}, eps, flagInitial, "needs a port", "", ""},
		{"bad port", Member{Name: "n1", InitialCluster: "n1=http://10.0.0.1:99999"}, eps, flagInitial, "1 to 65535", "", ""},
		{"scheme", Member{Name: "n1", InitialCluster: "n1=ftp://10.0.0.1:2380"}, eps, flagInitial, "use http://", "", ""},
		{"path", Member{Name: "n1", InitialCluster: "n1=http://10.0.0.1:2380/x"}, eps, flagInitial, "no user, path", "", ""},
		{"not a URL", Member{Name: "n1", InitialCluster: "n1=10.0.0.1:2380"}, eps, flagInitial, "is not http://IP:PORT", "", ""},
		{"twice", Member{Name: "n1", InitialCluster: "n1=http://10.0.0.1:2380,n1=http://10.0.0.2:2380"}, eps, flagInitial, "listed twice", "", ""},
		{"same URL", Member{Name: "n1", InitialCluster: "n1=http://10.0.0.1:2380,n2=http://10.0.0.1:2380"}, eps, flagInitial, "same peer URL", "", ""},
		{"own host name", Member{Name: "n1", InitialCluster: "n1=http://h1:2380,n2=http://10.0.0.2:2380,n3=http://10.0.0.3:2380"}, eps, flagInitial, "needs an IP address", "", ""},
		{"own 0.0.0.0", Member{Name: "n1", InitialCluster: "n1=http://0.0.0.0:2380,n2=http://10.0.0.2:2380,n3=http://10.0.0.3:2380"}, eps, flagInitial, "own IP address", "", ""},
		{"others' host names", Member{Name: "n1", ClientURL: "http://10.0.0.1:2379", InitialCluster: "n1=http://10.0.0.1:2380,n2=http://h2:2380,n3=http://h3:2380"}, []string{"http://10.0.0.1:2379", "http://h2:2379", "http://h3:2379"}, "", "", "http://10.0.0.1:2380", "http://10.0.0.1:2379"},
		{"no name given", Member{InitialCluster: ic}, eps, flagName, "empty", "", ""},
		{"not a member", Member{Name: "h4", InitialCluster: ic}, eps, flagName, `"h4" is not a member`, "", ""},
		{"peer differs", Member{Name: "n1", PeerURL: "http://10.0.0.1:2381", InitialCluster: ic}, eps, flagPeer, "differs", "", ""},
		{"bad peer", Member{Name: "n1", PeerURL: "10.0.0.1", InitialCluster: ic}, eps, flagPeer, "is not http://IP:PORT", "", ""},
		{"no endpoints", Member{Name: "n1", InitialCluster: ic}, nil, flagEndpoints, "every member's client URL", "", ""},
		{"too few endpoints", Member{Name: "n1", InitialCluster: ic}, eps[:2], flagEndpoints, "lists 2 client URLs for the 3 members", "", ""},
		{"endpoint twice", Member{Name: "n1", InitialCluster: ic}, []string{eps[0], eps[1], eps[1]}, flagEndpoints, "listed twice", "", ""},
		{"peer as endpoint", Member{Name: "n1", InitialCluster: ic}, []string{eps[0], eps[1], "http://10.0.0.3:2380"}, flagEndpoints, "not peer URLs", "", ""},
		{"bad endpoint", Member{Name: "n1", InitialCluster: ic}, []string{eps[0], eps[1], "10.0.0.3:2379"}, flagEndpoints, `"10.0.0.3:2379" is not http://IP:PORT`, "", ""},
		{"client not listed", Member{Name: "n1", ClientURL: "http://10.0.0.1:3379", InitialCluster: ic}, eps, flagEndpoints, "does not list this member's client URL", "", ""},
		{"client host name", Member{Name: "n1", ClientURL: "http://h1:2379", InitialCluster: ic}, eps, flagClient, "needs an IP address", "", ""},
		{"client not derivable", Member{Name: "a", InitialCluster: "a=http://127.0.0.1:7001,b=http://127.0.0.1:7003"}, []string{"http://127.0.0.1:7000", "http://127.0.0.1:7002"}, flagClient, "2 of its URLs", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := c.m.Check(c.eps)
			if c.flag == "" {
				if err != nil || m.PeerURL != c.peer || m.ClientURL != c.cl {
					t.Fatalf("got %+v, %v; want peer %s, client %s", m, err, c.peer, c.cl)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Flag != c.flag || !strings.Contains(err.Error(), c.msg) || !strings.HasPrefix(err.Error(), "--"+c.flag+": ") {
				t.Fatalf("error %v; want --%s: ...%s...", err, c.flag, c.msg)
			}
		})
	}
}

// freeURL is http://127.0.0.1:PORT with a port free right now.
func freeURL(t *testing.T) string {
	t.Helper()
	// The port is free when the listener closes, so the kernel may hand it
	// out again at the next call: never give one out twice.
	freeMu.Lock()
	defer freeMu.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		u := "http://" + l.Addr().String()
		l.Close()
		if !freeGiven[u] {
			freeGiven[u] = true
			return u
		}
	}
}

var (
	freeMu    sync.Mutex
	freeGiven = map[string]bool{}
)

// TestThreeMembers starts three stores in member mode (as three agents
// would), writes through one and reads through the others, restarts one
// member on its data, and checks the single-member and member data are not
// mixed up.
func TestThreeMembers(t *testing.T) {
	ctx := context.Background()
	const n = 3
	cfgs := make([]Config, n)
	var initial, eps []string
	for i := range n {
		peer, client := freeURL(t), freeURL(t)
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peer))
		eps = append(eps, client)
		cfgs[i] = Config{DataDir: t.TempDir(), Timeout: time.Minute, Member: &Member{Name: fmt.Sprintf("m%d", i), ClientURL: client}}
	}
	for i := range cfgs {
		cfgs[i].Member.InitialCluster = strings.Join(initial, ",")
		cfgs[i].Endpoints = eps
	}
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// One after the other, like agents booting: each waits for quorum.
			time.Sleep(time.Duration(i) * 300 * time.Millisecond)
			stores[i], errs[i] = Open(ctx, cfgs[i])
		})
	}
	wg.Wait()
	defer func() {
		for _, s := range stores {
			if s != nil {
				s.Close()
			}
		}
	}()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		if !stores[i].Embedded() || len(stores[i].Endpoints()) != n {
			t.Fatalf("member %d: embedded %v, endpoints %v", i, stores[i].Embedded(), stores[i].Endpoints())
		}
	}
	d := Desired{Spec: api.VMSpec{Name: "a", Kernel: "/k"}, Power: api.PowerRunning, Host: "h1"}
	if err := stores[0].CreateVM(ctx, d); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		if r, err := stores[i].GetVM(ctx, "a"); err != nil || r.Desired.Host != "h1" {
			t.Fatalf("read through member %d: %+v, %v", i, r, err)
		}
	}

	// A restarted member rejoins from its data (the initial cluster is ignored).
	stores[1].Close()
	stores[1] = nil
	if err := stores[2].CreateVM(ctx, Desired{Spec: api.VMSpec{Name: "b", Kernel: "/k"}, Host: "h2"}); err != nil {
		t.Fatalf("write with one member down: %v", err)
	}
	var err error
	if stores[1], err = Open(ctx, cfgs[1]); err != nil {
		t.Fatalf("restart member 1: %v", err)
	}
	if r, err := stores[1].GetVM(ctx, "b"); err != nil || r.Desired.Host != "h2" {
		t.Fatalf("read through the restarted member: %+v, %v", r, err)
	}

	// Member data is not opened in the single-member mode, nor under another name.
	stores[1].Close()
	stores[1] = nil
	if _, err := Open(ctx, Config{DataDir: cfgs[1].DataDir}); err == nil || !strings.Contains(err.Error(), `cluster member "m1"`) {
		t.Fatalf("single-member mode on member data: %v", err)
	}
	renamed := cfgs[1]
	renamed.Member = &Member{Name: "m0", ClientURL: eps[0], InitialCluster: cfgs[1].Member.InitialCluster}
	if _, err := Open(ctx, renamed); err == nil || !strings.Contains(err.Error(), "--etcd-name: the etcd data") {
		t.Fatalf("member data under another name: %v", err)
	}
}

func TestMemberModeRefusesSingleMemberData(t *testing.T) {
	dir := t.TempDir()
	openTemp(t, dir).Close()
	peer, client := freeURL(t), freeURL(t)
	_, err := Open(context.Background(), Config{DataDir: dir, Endpoints: []string{client},
		Member: &Member{Name: "a", ClientURL: client, InitialCluster: "a=" + peer}})
	if err == nil || !strings.Contains(err.Error(), "single-member embedded etcd") {
		t.Fatalf("member mode on single-member data: %v", err)
	}
}

func TestMemberWithoutQuorumTimesOut(t *testing.T) {
	client := freeURL(t)
	ic := fmt.Sprintf("a=%s,b=%s,c=%s", freeURL(t), freeURL(t), freeURL(t))
	t0 := time.Now()
	_, err := Open(context.Background(), Config{DataDir: t.TempDir(), Timeout: time.Second,
		Endpoints: []string{client, freeURL(t), freeURL(t)}, Member: &Member{Name: "a", ClientURL: client, InitialCluster: ic}})
	if err == nil || !strings.Contains(err.Error(), "etcd member a has no quorum (2 of 3 members) after 1s") {
		t.Fatalf("lone member: %v", err)
	}
	if d := time.Since(t0); d > 15*time.Second {
		t.Fatalf("gave up after %v, want about 1s", d)
	}
}
