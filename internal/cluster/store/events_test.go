package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
)

// TestClusterEvents: events come back oldest first, the newest N on
// request; a watch sees new ones with their revisions; pruning keeps the
// newest.
func TestClusterEvents(t *testing.T) {
	s := openTemp(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := s.WatchEvents(ctx, 0)
	t0 := time.Now().UTC()
	for i := range 5 {
		ev := api.ClusterEvent{Time: t0.Add(time.Duration(i) * time.Millisecond), Kind: api.EventHostState, Host: fmt.Sprintf("h%d", i), Reason: fmt.Sprintf("event %d", i)}
		if err := s.PutEvent(ctx, "lab1", ev); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		select {
		case e := <-w:
			if e.Event.Reason != fmt.Sprintf("event %d", i) || e.Revision == 0 {
				t.Fatalf("watched event %d: %+v", i, e)
			}
		case <-ctx.Done():
			t.Fatal("the watch saw no event")
		}
	}
	all, err := s.ClusterEvents(ctx, 0)
	if err != nil || len(all) != 5 || all[0].Reason != "event 0" || all[4].Reason != "event 4" {
		t.Fatalf("all events: %+v, %v", all, err)
	}
	last, err := s.ClusterEvents(ctx, 2)
	if err != nil || len(last) != 2 || last[0].Reason != "event 3" || last[1].Reason != "event 4" {
		t.Fatalf("the newest 2: %+v, %v", last, err)
	}
	if err := s.PruneEvents(ctx, 3); err != nil {
		t.Fatal(err)
	}
	kept, err := s.ClusterEvents(ctx, 0)
	if err != nil || len(kept) != 3 || kept[0].Reason != "event 2" {
		t.Fatalf("after pruning to 3: %+v, %v", kept, err)
	}
	if err := s.PruneEvents(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if kept, _ := s.ClusterEvents(ctx, 0); len(kept) != 3 {
		t.Fatalf("pruning again removed more: %+v", kept)
	}
}
