package agent

import (
	"context"

	"github.com/govisor/govisor/api"
)

// Events streams VM changes from an etcd watch, after revision since (0:
// from now), until ctx ends: definitions ("spec"), statuses ("status") and
// deletions ("deleted"), each with its etcd revision.
func (a *Agent) Events(ctx context.Context, since int64) <-chan api.Event {
	out := make(chan api.Event)
	go func() {
		defer close(out)
		for ev := range a.st.Watch(ctx, since) {
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
