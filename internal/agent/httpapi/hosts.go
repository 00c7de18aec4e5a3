package httpapi

import (
	"github.com/govisor/govisor/api"

	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/govisor/govisor/internal/agent/service"
)

// handleEvents streams VM changes as server-sent events
// (https://html.spec.whatwg.org/multipage/server-sent-events.html): each
// event's id is the etcd revision, its type the api.Event type, its data the
// api.Event JSON. ?since=REV replays changes after that revision.
func (s *server) handleEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		httpError(w, fmt.Errorf("agent: this connection cannot stream"))
		return
	}
	var since int64
	if q := r.URL.Query().Get("since"); q != "" {
		n, err := strconv.ParseInt(q, 10, 64)
		if err != nil || n < 0 {
			httpError(w, &service.FieldError{Field: "since", Msg: fmt.Sprintf("%q: give an etcd revision", q)})
			return
		}
		since = n
	}
	// End the stream with the request or when the agent closes its API.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if s.opts.Streams != nil {
		defer context.AfterFunc(s.opts.Streams, cancel)()
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": watching\n\n")
	fl.Flush()
	for e := range s.svc.Events(ctx, since) {
		b, _ := json.Marshal(e)
		if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Revision, e.Type, b); err != nil {
			return
		}
		fl.Flush()
	}
}

func (s *server) handleHost(w http.ResponseWriter, r *http.Request) {
	h, err := s.svc.Host(r.Context())
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, h)
}

func (s *server) handleHosts(w http.ResponseWriter, r *http.Request) {
	hs, err := s.svc.Hosts(r.Context())
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, hs)
}

// handleMaintenance serves PUT /v1/hosts/{host}/maintenance.
func (s *server) handleMaintenance(w http.ResponseWriter, r *http.Request) {
	var req api.MaintenanceRequest
	if err := DecodeObject(r, &req, "a maintenance request"); err != nil {
		httpError(w, err)
		return
	}
	h, err := s.svc.SetMaintenance(r.Context(), r.PathValue("host"), req.Maintenance)
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, h)
}

// handleSettings serves GET /v1/cluster/settings.
func (s *server) handleSettings(w http.ResponseWriter, r *http.Request) {
	cs, err := s.svc.Settings(r.Context())
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, cs)
}

// handlePutSettings serves PUT /v1/cluster/settings.
func (s *server) handlePutSettings(w http.ResponseWriter, r *http.Request) {
	var cs api.ClusterSettings
	if err := DecodeObject(r, &cs, "cluster settings"); err != nil {
		httpError(w, err)
		return
	}
	cs, err := s.svc.PutSettings(r.Context(), cs)
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, cs)
}

// handleClusterEvents serves GET /v1/cluster/events?limit=N.
func (s *server) handleClusterEvents(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			httpError(w, fmt.Errorf("%w: limit %q: give a count, 0 for every event kept", service.ErrInvalid, v))
			return
		}
		limit = n
	}
	evs, err := s.svc.ClusterEvents(r.Context(), limit)
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, api.ClusterEventList{Items: evs})
}

// handleAddMember serves POST /v1/cluster/members.
func (s *server) handleAddMember(w http.ResponseWriter, r *http.Request) {
	var req api.JoinRequest
	if err := DecodeObject(r, &req, "join request"); err != nil {
		httpError(w, err)
		return
	}
	info, err := s.svc.AddMember(r.Context(), req)
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, info)
}

// handleBalance serves GET (plan) and POST (plan and apply)
// /v1/cluster/balance.
func (s *server) handleBalance(w http.ResponseWriter, r *http.Request) {
	do := s.svc.BalancePlan
	if r.Method == http.MethodPost {
		do = s.svc.Balance
	}
	p, err := do(r.Context())
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, p)
}

// handleUsage serves GET /v1/usage?from=RFC3339&to=RFC3339[&vm=NAME][&step=DURATION]:
// this host's utilization samples in the window (default: the last 24 hours).
func (s *server) handleUsage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rep, err := s.svc.Usage(r.Context(), service.UsageQuery{From: q.Get("from"), To: q.Get("to"), VM: q.Get("vm"), Step: q.Get("step")})
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, rep)
}
