package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/audit"
)

// handleAudit serves GET /v1/audit?since=RFC3339&who=NAME&limit=N: the
// changes made through this agent's API, oldest first (admins only:
// apiguard.Need).
func (s *server) handleAudit(w http.ResponseWriter, r *http.Request) {
	if s.opts.Audit == nil {
		WriteJSON(w, http.StatusNotFound, api.Error{Message: "this agent keeps no audit log"})
		return
	}
	q := audit.Query{Who: r.URL.Query().Get("who"), Limit: 1000}
	if v := r.URL.Query().Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			httpError(w, &service.FieldError{Field: "since", Msg: "want an RFC 3339 time such as 2026-12-06T10:00:00Z"})
			return
		}
		q.Since = t
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			httpError(w, &service.FieldError{Field: "limit", Msg: "want a number from 1 to 100000"})
			return
		}
		q.Limit = n
	}
	list, err := s.opts.Audit.Read(q)
	if err != nil {
		httpError(w, fmt.Errorf("reading the audit log: %w", err))
		return
	}
	WriteJSON(w, http.StatusOK, list)
}
