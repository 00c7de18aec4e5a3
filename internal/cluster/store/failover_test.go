package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store/storetest"
)

// openBehindProxies opens a store on a 3-member cluster whose client URLs
// are reached through proxies that can play dead.
func openBehindProxies(t *testing.T, cfg Config) (*storetest.Cluster, []*storetest.Proxy, *Store) {
	t.Helper()
	cl := storetest.StartCluster(t, 3)
	ps, eps := storetest.NewProxies(t, cl.Endpoints)
	cfg.Endpoints = eps
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return cl, ps, s
}

// round is what an agent does all the time: list VMs, list hosts, write a
// status. It fails if any of them fails or takes longer than limit.
func round(s *Store, limit time.Duration, wantHost string) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if _, _, err := s.ListVMs(ctx); err != nil {
		return err
	}
	hs, err := s.Hosts(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(hs, func(h api.Host) bool { return h.Name == wantHost }) {
		return fmt.Errorf("host %s is not registered (hosts %v)", wantHost, hs)
	}
	return s.PutStatus(ctx, "a", api.VMStatus{State: api.StateRunning, PID: 1})
}

// TestMemberLosesPowerWithoutRST pulls the power of the etcd leader as a
// killed machine does (its connections go silent, no RST): the store's
// client must notice, use the two survivors, and keep the host registered
// (its lease kept alive, or registered again).
func TestMemberLosesPowerWithoutRST(t *testing.T) {
	cl, ps, s := openBehindProxies(t, Config{Timeout: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := s.RegisterHost(ctx, api.Host{Name: "h1"}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateVM(ctx, Desired{Spec: api.VMSpec{Name: "a", Kernel: "/k"}, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	// Every member's connection carries requests before the kill.
	for range 6 {
		if err := round(s, 5*time.Second, "h1"); err != nil {
			t.Fatal(err)
		}
	}
	victim := -1
	for deadline := time.Now().Add(10 * time.Second); victim < 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		victim = cl.Leader()
	}
	if victim < 0 {
		t.Fatal("the cluster has no leader")
	}
	ps[victim].Blackhole()
	cl.Kill(victim)
	killed := time.Now()

	// Serving again means ten rounds in a row, each within 2 s.
	const bound = 30 * time.Second
	var streak int
	var since time.Time
	var errs []string
	for streak < 10 {
		if time.Since(killed) > bound+20*time.Second {
			t.Fatalf("the two surviving members do not serve %v after the leader lost power: %s", time.Since(killed).Round(time.Second), strings.Join(errs, "; "))
		}
		t0 := time.Now()
		if err := round(s, 2*time.Second, "h1"); err != nil {
			streak = 0
			errs = append(errs, fmt.Sprintf("%v: %v", t0.Sub(killed).Round(100*time.Millisecond), err))
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if streak == 0 {
			since = t0
		}
		streak++
	}
	t.Logf("serving again %v after the kill (%d failed rounds: %s)", since.Sub(killed).Round(100*time.Millisecond), len(errs), strings.Join(errs, "; "))
	if d := since.Sub(killed); d > bound {
		t.Fatalf("serving again only %v after the kill, want at most %v", d, bound)
	}
}

// TestRegisterHostOutlivesItsLease: a host whose lease is lost (revoked
// here; expired while its keep-alives went to a dead member in a cluster)
// is registered again.
func TestRegisterHostOutlivesItsLease(t *testing.T) {
	s := openTemp(t, t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Now()
	hl, err := s.RegisterHost(ctx, api.Host{Name: "h1"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The confirmed expiry starts at the grant and moves on with every
	// answered keep-alive, never beyond what etcd can have granted.
	c1 := hl.ConfirmedUntil()
	if c1.Before(t0.Add(4*time.Second)) || c1.After(time.Now().Add(5*time.Second)) {
		t.Errorf("ConfirmedUntil %v after registering at %v with a 5s TTL", c1.Sub(t0), t0)
	}
	time.Sleep(2500 * time.Millisecond)
	if c2 := hl.ConfirmedUntil(); !c2.After(c1) || c2.After(time.Now().Add(5*time.Second)) {
		t.Errorf("ConfirmedUntil did not move on with the keep-alives: %v then %v", c1.Sub(t0), c2.Sub(t0))
	}
	leases, err := s.cli.Leases(ctx)
	if err != nil || len(leases.Leases) != 1 {
		t.Fatalf("leases %+v, %v; want one", leases, err)
	}
	if _, err := s.cli.Revoke(ctx, leases.Leases[0].ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		hs, err := s.Hosts(ctx)
		if err == nil && len(hs) == 1 && hs[0].Name == "h1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host not registered again after losing its lease: %v, %v", hs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Ending ctx ends the registration, and its lease goes with it.
	cancel()
	deadline = time.Now().Add(10 * time.Second)
	for {
		hs, err := s.Hosts(context.Background())
		if err == nil && len(hs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host still registered after its context ended: %v, %v", hs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNoQuorumFailsClearly: a store whose only reachable member has lost
// the others fails requests that have no deadline of their own within its
// request timeout, saying so.
func TestNoQuorumFailsClearly(t *testing.T) {
	cl, ps, s := openBehindProxies(t, Config{Timeout: 10 * time.Second, RequestTimeout: 3 * time.Second})
	for _, i := range []int{1, 2} {
		ps[i].Blackhole()
		cl.Kill(i)
	}
	t0 := time.Now()
	_, _, err := s.ListVMs(context.Background())
	d := time.Since(t0)
	if err == nil || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("list without a quorum: %v, want ErrUnavailable naming the quorum", err)
	}
	if d > 10*time.Second {
		t.Fatalf("list without a quorum failed after %v, want about 3s", d)
	}
	t.Logf("after %v: %v", d.Round(100*time.Millisecond), err)
}

// TestLoneMemberFailsClearly: the store of an embedded member that lost
// the other two says that its member has no leader.
func TestLoneMemberFailsClearly(t *testing.T) {
	ctx := context.Background()
	const n = 3
	var initial, eps []string
	for i := range n {
		initial, eps = append(initial, fmt.Sprintf("m%d=%s", i, freeURL(t))), append(eps, freeURL(t))
	}
	stores := make([]*Store, n)
	errs := make([]error, n)
	done := make(chan int)
	for i := range n {
		go func() {
			stores[i], errs[i] = Open(ctx, Config{DataDir: t.TempDir(), Endpoints: eps, Timeout: time.Minute, RequestTimeout: 3 * time.Second,
				Member: &Member{Name: fmt.Sprintf("m%d", i), ClientURL: eps[i], InitialCluster: strings.Join(initial, ",")}})
			done <- i
		}()
	}
	for range n {
		<-done
	}
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("member %d: %v", i, errs[i])
		}
		defer s.Close()
	}
	stores[1].Close()
	stores[2].Close()
	for deadline := time.Now().Add(20 * time.Second); stores[0].etc.Server.Leader() != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the lone member still has a leader")
		}
	}
	_, err := stores[0].Hosts(ctx)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "etcd member m0 has no leader") {
		t.Fatalf("hosts through a lone member: %v, want ErrUnavailable saying m0 has no leader", err)
	}
}
