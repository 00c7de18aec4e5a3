package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/govisor/govisor/api"
)

// handleEvents streams VM changes from an etcd watch as server-sent events
// (https://html.spec.whatwg.org/multipage/server-sent-events.html): each
// event's id is the etcd revision, its type the api.Event type, its data the
// api.Event JSON. ?since=REV replays changes after that revision.
func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		httpError(w, fmt.Errorf("agent: this connection cannot stream"))
		return
	}
	var since int64
	if q := r.URL.Query().Get("since"); q != "" {
		n, err := strconv.ParseInt(q, 10, 64)
		if err != nil || n < 0 {
			httpError(w, &FieldError{"since", fmt.Sprintf("%q: give an etcd revision", q)})
			return
		}
		since = n
	}
	// End the stream with the request or when the agent closes its API
	// (http.Server.Shutdown does not wait for streams to end on their own).
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(a.evCtx, cancel)()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": watching\n\n")
	fl.Flush()
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
		b, _ := json.Marshal(e)
		if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Revision, e.Type, b); err != nil {
			return
		}
		fl.Flush()
	}
}
