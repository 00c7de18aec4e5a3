package agent

import (
	"context"
	"sync"

	"github.com/govisor/govisor/api"
)

// Events streams VM changes from an etcd watch, after revision since (0:
// from now), until ctx ends: definitions ("spec"), statuses ("status") and
// deletions ("deleted"), and the cluster's decisions and host changes
// ("cluster"), each with its etcd revision.
func (svc *hostService) Events(ctx context.Context, since int64) <-chan api.Event {
	out := make(chan api.Event)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		wg.Wait()
		close(out)
	}()
	go func() {
		// Cluster events go into the same stream, ordered by revision
		// only within each watch: clients key on the revision.
		defer wg.Done()
		defer cancel()
		for ev := range svc.st.WatchEvents(ctx, since) {
			c := ev.Event
			select {
			case out <- api.Event{Type: "cluster", VM: c.VM, Revision: ev.Revision, Cluster: &c}:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		defer cancel()
		for ev := range svc.st.Watch(ctx, since) {
			e := api.Event{VM: ev.VM, Revision: ev.Revision}
			switch {
			case ev.Deleted && ev.Kind == "spec":
				e.Type = "deleted"
			case ev.Deleted:
				continue
			case ev.Desired != nil:
				e.Type, e.Spec, e.Desired = "spec", &ev.Desired.Spec, ev.Desired.Power
			case ev.Status != nil:
				e.Type, e.Status = "status", ev.Status
			default:
				continue
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return // the store's watch ends with ctx too
			}
		}
	}()
	return out
}
