package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/govisor/govisor/api"
)

func TestNetworks(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, t.TempDir())
	defer s.Close()
	for _, n := range []string{"lan", "dmz"} {
		if err := s.CreateNetwork(ctx, api.Network{Name: n, Kind: api.NetworkBridge, Bridge: "gv-" + n}); err != nil {
			t.Fatal(err)
		}
	}
	err := s.CreateNetwork(ctx, api.Network{Name: "lan", Bridge: "other"})
	if !errors.Is(err, ErrExists) || err.Error() != "network lan already exists" {
		t.Fatalf("second create: %v, want ErrExists saying so", err)
	}
	n, err := s.GetNetwork(ctx, "lan")
	if err != nil || n.Bridge != "gv-lan" {
		t.Fatalf("get: %+v, %v", n, err)
	}
	if _, err := s.GetNetwork(ctx, "wan"); !errors.Is(err, ErrNotFound) || err.Error() != "no network wan" {
		t.Fatalf("get missing: %v, want ErrNotFound saying so", err)
	}
	nets, err := s.ListNetworks(ctx)
	if err != nil || len(nets) != 2 || nets[0].Name != "dmz" || nets[1].Name != "lan" {
		t.Fatalf("list: %+v, %v; want dmz, lan", nets, err)
	}
	// The keys on disk stay what they were when the agent wrote them.
	resp, err := s.cli.Get(ctx, "/govisor/networks/lan")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != `{"name":"lan","kind":"bridge","bridge":"gv-lan"}` {
		t.Fatalf("key /govisor/networks/lan: %+v, %v", resp, err)
	}

	busy := errors.New("busy")
	if err := s.DeleteNetwork(ctx, "lan", func([]Record) error { return busy }); !errors.Is(err, busy) {
		t.Fatalf("delete refused by inUse: %v", err)
	}
	if _, err := s.GetNetwork(ctx, "lan"); err != nil {
		t.Fatalf("a refused delete deleted: %v", err)
	}
	if err := s.DeleteNetwork(ctx, "lan", func([]Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNetwork(ctx, "lan", func([]Record) error { return nil }); !errors.Is(err, ErrNotFound) || err.Error() != "no network lan" {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if nets, err := s.ListNetworks(ctx); err != nil || len(nets) != 1 || nets[0].Name != "dmz" {
		t.Fatalf("list after delete: %+v, %v", nets, err)
	}
}

// TestDeleteSeesNewVMs: a VM defined between the in-use check and the
// delete makes the delete check again, so it cannot lose its network.
func TestDeleteSeesNewVMs(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, t.TempDir())
	defer s.Close()
	if err := s.CreateNetwork(ctx, api.Network{Name: "lan"}); err != nil {
		t.Fatal(err)
	}
	busy := errors.New("busy")
	calls := 0
	err := s.DeleteNetwork(ctx, "lan", func(recs []Record) error {
		calls++
		if len(recs) > 0 {
			return busy
		}
		// Meanwhile another agent defines a VM on the network.
		spec := api.VMSpec{Name: "a", Kernel: "/k", NICs: []api.NICSpec{{Network: "lan"}}}
		return s.CreateVM(ctx, Desired{Spec: spec})
	})
	if !errors.Is(err, busy) || calls != 2 {
		t.Fatalf("delete: %v after %d checks, want busy after 2", err, calls)
	}
	if _, err := s.GetNetwork(ctx, "lan"); err != nil {
		t.Fatalf("the network of a new VM was deleted: %v", err)
	}

	// VMs that never stop changing: the delete gives up.
	i := 0
	err = s.DeleteNetwork(ctx, "lan", func([]Record) error {
		i++
		return s.CreateVM(ctx, Desired{Spec: api.VMSpec{Name: fmt.Sprintf("b%d", i), Kernel: "/k"}})
	})
	if !errors.Is(err, ErrConflict) || err.Error() != "network lan: VMs changed while deleting it, try again" {
		t.Fatalf("delete among changing VMs: %v, want ErrConflict", err)
	}
}

func TestPools(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, t.TempDir())
	defer s.Close()
	p := api.Pool{Name: "images", Kind: api.PoolDir, Path: "/var/lib/images", Host: "h1"}
	if err := s.CreatePool(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := s.CreatePool(ctx, p); !errors.Is(err, ErrExists) || err.Error() != "storage pool images already exists" {
		t.Fatalf("second create: %v, want ErrExists saying so", err)
	}
	if err := s.CreatePool(ctx, api.Pool{Name: "nfs", Kind: api.PoolShared, Path: "/mnt/nfs", Shared: true}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetPool(ctx, "images")
	if err != nil || got != p {
		t.Fatalf("get: %+v, %v; want %+v", got, err, p)
	}
	if _, err := s.GetPool(ctx, "nope"); !errors.Is(err, ErrNotFound) || err.Error() != "no storage pool nope" {
		t.Fatalf("get missing: %v, want ErrNotFound saying so", err)
	}
	pools, err := s.ListPools(ctx)
	if err != nil || len(pools) != 2 || pools[0].Name != "images" || pools[1].Name != "nfs" || !pools[1].Shared {
		t.Fatalf("list: %+v, %v", pools, err)
	}
	if resp, err := s.cli.Get(ctx, "/govisor/pools/nfs"); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("key /govisor/pools/nfs: %+v, %v", resp, err)
	}
	busy := errors.New("busy")
	if err := s.DeletePool(ctx, "images", func([]Record) error { return busy }); !errors.Is(err, busy) {
		t.Fatalf("delete refused by inUse: %v", err)
	}
	if err := s.DeletePool(ctx, "images", func([]Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPool(ctx, "images"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}

	// A corrupt object is an error naming its key, not a silent gap.
	if _, err := s.cli.Put(ctx, "/govisor/pools/bad", "{"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListPools(ctx); err == nil || !strings.HasPrefix(err.Error(), "store: decode /govisor/pools/bad: ") {
		t.Fatalf("list with a corrupt pool: %v", err)
	}
}
