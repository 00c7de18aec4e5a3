package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
)

// TestJoinGrowsTheCluster starts one member, as the first host's agent
// does, and lets three more hosts join through AddMember: the first two
// become voting members (learners promoted once caught up) that read what
// the first wrote, the fourth is told to be a client of the three. A
// repeated join gets the same answer; a join under a taken name with
// another URL is refused.
func TestJoinGrowsTheCluster(t *testing.T) {
	ctx := context.Background()
	p1, c1 := freeURL(t), freeURL(t)
	s1, err := Open(ctx, Config{DataDir: t.TempDir(), Timeout: time.Minute, Endpoints: []string{c1},
		Member: &Member{Name: "h1", ClientURL: c1, InitialCluster: "h1=" + p1}})
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	if err := s1.CreateVM(ctx, Desired{Spec: api.VMSpec{Name: "web", Kernel: "/k"}, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	stores := []*Store{s1}
	defer func() {
		for _, s := range stores[1:] {
			s.Close()
		}
	}()
	for _, name := range []string{"h2", "h3"} {
		peer, client := freeURL(t), freeURL(t)
		info, err := stores[0].AddMember(ctx, name, peer)
		if err != nil || !info.Member || !strings.Contains(info.InitialCluster, name+"="+peer) {
			t.Fatalf("AddMember(%s) = %+v, %v", name, info, err)
		}
		if again, err := stores[len(stores)-1].AddMember(ctx, name, peer); err != nil || again.InitialCluster != info.InitialCluster {
			t.Fatalf("AddMember(%s) again = %+v, %v; first %+v", name, again, err, info)
		}
		s, err := Open(ctx, Config{DataDir: t.TempDir(), Timeout: time.Minute, Endpoints: append(info.Endpoints, client),
			Member: &Member{Name: name, ClientURL: client, InitialCluster: info.InitialCluster, Join: true}})
		if err != nil {
			t.Fatalf("open %s as a joining member: %v", name, err)
		}
		stores = append(stores, s)
		if r, err := s.GetVM(ctx, "web"); err != nil || r.Desired.Host != "h1" {
			t.Fatalf("%s reads %+v, %v", name, r, err)
		}
	}
	list, err := s1.cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Members) != 3 {
		t.Fatalf("%d members, want 3", len(list.Members))
	}
	for _, m := range list.Members {
		if m.IsLearner {
			t.Errorf("member %s is still a learner", m.Name)
		}
	}
	info, err := stores[2].AddMember(ctx, "h4", freeURL(t))
	if err != nil || info.Member || len(info.Endpoints) != 3 {
		t.Fatalf("AddMember(h4) in a full cluster = %+v, %v: want a client of the 3 members", info, err)
	}
	if _, err := s1.AddMember(ctx, "h2", freeURL(t)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "exists with peer URL") {
		t.Errorf("AddMember(h2) with another URL: %v", err)
	}
	// The cluster survives one member's loss now: stop h1, write through
	// h2. A write while h2 and h3 elect a leader fails as etcd says
	// ("request timed out, possibly due to previous leader failure"; on a
	// loaded CI machine the election outlasted etcd's request timeout), and
	// a client retries it, as here; one that went through despite the
	// error reads back as existing.
	s1.Close()
	d := Desired{Spec: api.VMSpec{Name: "db", Kernel: "/k"}, Host: "h2"}
	for deadline := time.Now().Add(time.Minute); ; {
		err := stores[1].CreateVM(ctx, d)
		if err == nil || errors.Is(err, ErrExists) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("write with h1 gone, for a minute: %v", err)
		}
		t.Logf("write with h1 gone: %v; again", err)
		time.Sleep(time.Second)
	}
	if r, err := stores[2].GetVM(ctx, "db"); err != nil || r.Desired.Host != "h2" {
		t.Fatalf("h3 reads %+v, %v", r, err)
	}
}
