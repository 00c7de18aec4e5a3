package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
)

// openTemp opens a store on an embedded etcd in dir, closed when the test
// ends (before dir, made earlier by t.TempDir, is removed: an etcd whose
// data vanished under it exits the process).
func openTemp(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStoreLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTemp(t, dir)
	if !s.Embedded() {
		t.Fatal("no endpoints given, but the store is not embedded")
	}
	events := s.Watch(ctx, 0)
	d := Desired{Spec: api.VMSpec{Name: "a", Kernel: "/k"}, Power: api.PowerRunning, Host: "h1"}
	if err := s.CreateVM(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateVM(ctx, d); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if err := s.PutStatus(ctx, "nope", api.VMStatus{State: api.StateRunning}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status of a missing VM: %v, want ErrNotFound", err)
	}
	if err := s.PutStatus(ctx, "a", api.VMStatus{State: api.StateRunning, PID: 42}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateVM(ctx, "a", func(d *Desired) error { d.Power = api.PowerStopped; return nil }); err != nil {
		t.Fatal(err)
	}
	r, err := s.GetVM(ctx, "a")
	if err != nil || r.Desired.Power != api.PowerStopped || r.Status == nil || r.Status.PID != 42 {
		t.Fatalf("get: %+v, %v", r, err)
	}
	if _, err := s.GetVM(ctx, "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	busy := errors.New("busy")
	if err := s.DeleteVM(ctx, "a", func(Record) error { return busy }); !errors.Is(err, busy) {
		t.Fatalf("delete refused by check: %v", err)
	}
	// The spec-and-status watch sees create, status, update in order.
	want := []string{"spec", "status", "spec"}
	for i, k := range want {
		select {
		case ev := <-events:
			if ev.VM != "a" || ev.Kind != k || ev.Deleted {
				t.Fatalf("event %d: %+v, want %s of a", i, ev, k)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d (%s) never came", i, k)
		}
	}
	s.Close()

	// The data survives a restart of the embedded member.
	s = openTemp(t, dir)
	defer s.Close()
	recs, _, err := s.ListVMs(ctx)
	if err != nil || len(recs) != 1 || recs[0].Desired.Spec.Name != "a" {
		t.Fatalf("after reopen: %+v, %v", recs, err)
	}
	if err := s.DeleteVM(ctx, "a", func(Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if recs, _, _ := s.ListVMs(ctx); len(recs) != 0 {
		t.Fatalf("after delete: %+v", recs)
	}
	if _, err := s.RegisterHost(ctx, api.Host{Name: "h1", CPUs: 2}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if hs, err := s.Hosts(ctx); err != nil || len(hs) != 1 || hs[0].CPUs != 2 {
		t.Fatalf("hosts: %+v, %v", hs, err)
	}
}

func TestSplitKey(t *testing.T) {
	cases := []struct {
		key, name, kind string
		ok              bool
	}{
		{"/govisor/vms/a/spec", "a", "spec", true},
		{"/govisor/vms/a/status", "a", "status", true},
		{"/govisor/vms//spec", "", "", false},
		{"/govisor/vms/a", "", "", false},
		{"/govisor/vms/a/b/c", "", "", false},
		{"/govisor/hosts/h", "", "", false},
	}
	for _, c := range cases {
		name, kind, ok := splitKey(c.key)
		if ok != c.ok || (ok && (name != c.name || kind != c.kind)) {
			t.Errorf("splitKey(%q) = %q, %q, %v", c.key, name, kind, ok)
		}
	}
}
