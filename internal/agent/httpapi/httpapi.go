// Package httpapi is the agent's REST API over HTTP: each handler decodes
// the request, calls one operation of service.Services and encodes the
// answer; httpError maps the services' typed errors to status codes.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/apiguard"
	"github.com/govisor/govisor/internal/audit"
	"github.com/govisor/govisor/internal/cluster/store"
)

// MaxBody bounds a request body (and the console log an answer carries).
const MaxBody = 1 << 20

// Options are what the API needs besides the services.
type Options struct {
	// Metrics serves GET /metrics (nil: 404).
	Metrics http.Handler
	// Streams ends event streams when done (http.Server.Shutdown does not
	// wait for streams to end on their own); nil: only with the request.
	Streams context.Context
	// Guard checks every route's requests (roles, sizes, rates) and audits
	// changes (nil: no checks, for Routes only: the agent always sets it).
	Guard *apiguard.Guard
	// Audit serves GET /v1/audit (nil: 404).
	Audit *audit.Log
}

// server is the API over one set of services.
type server struct {
	svc  service.Services
	opts Options
}

// New returns the API's handler over svc.
func New(svc service.Services, opts Options) http.Handler {
	return (&server{svc: svc, opts: opts}).routes()
}

// Routes are the patterns ("METHOD /path") the API serves, in the order
// routes registers them, and "/" for the 404 of everything else. The api
// package's test checks them against openapi.yaml both ways.
func Routes() []string {
	return slices.Clone((&server{}).routes().(*routeMux).patterns)
}

// routeMux is a ServeMux that records the patterns registered on it and
// guards each (apiguard: the role a route needs is decided by its pattern).
type routeMux struct {
	*http.ServeMux
	patterns []string
	guard    *apiguard.Guard
}

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	if m.guard != nil {
		h = m.guard.Wrap(pattern, h)
	}
	m.ServeMux.Handle(pattern, h)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

func (s *server) routes() http.Handler {
	m := &routeMux{ServeMux: http.NewServeMux(), guard: s.opts.Guard}
	m.HandleFunc("POST /v1/vms", s.handleCreate)
	m.HandleFunc("GET /v1/vms", s.handleList)
	m.HandleFunc("GET /v1/vms/{name}", s.handleGet)
	m.HandleFunc("PUT /v1/vms/{name}", s.handleApply)
	m.HandleFunc("DELETE /v1/vms/{name}", s.handleDelete)
	m.HandleFunc("POST /v1/vms/{name}/{action}", s.handleAction)
	m.HandleFunc("GET /v1/vms/{name}/console", s.handleConsole)
	m.HandleFunc("POST /v1/vms/{name}/snapshot", s.handleSnapshot)
	m.HandleFunc("POST /v1/vms/{name}/disks", s.handleAttachDisk)
	m.HandleFunc("DELETE /v1/vms/{name}/disks/{index}", s.handleDetachDisk)
	m.HandleFunc("GET /v1/vms/{name}/snapshots", s.handleSnapshots)
	m.HandleFunc("POST /v1/vms/{name}/restore", s.handleRestore)
	m.HandleFunc("POST /v1/vms/{name}/migrate", s.handleMigrate)
	m.HandleFunc("DELETE /v1/vms/{name}/migrate", s.handleCancelMigrate)
	m.HandleFunc("POST /v1/vms/{name}/incoming", s.handleIncoming)
	m.HandleFunc("DELETE /v1/vms/{name}/incoming", s.handleCancelIncoming)
	m.HandleFunc("GET /v1/vms/{name}/incoming", s.handleIncomingState)
	m.HandleFunc("GET /v1/events", s.handleEvents)
	m.HandleFunc("GET /v1/host", s.handleHost)
	m.HandleFunc("GET /v1/hosts", s.handleHosts)
	m.HandleFunc("PUT /v1/hosts/{host}/maintenance", s.handleMaintenance)
	m.HandleFunc("GET /v1/cluster/settings", s.handleSettings)
	m.HandleFunc("PUT /v1/cluster/settings", s.handlePutSettings)
	m.HandleFunc("POST /v1/cluster/members", s.handleAddMember)
	m.HandleFunc("GET /v1/cluster/events", s.handleClusterEvents)
	m.HandleFunc("GET /v1/cluster/balance", s.handleBalance)
	m.HandleFunc("POST /v1/cluster/balance", s.handleBalance)
	m.HandleFunc("POST /v1/networks", s.handleCreateNetwork)
	m.HandleFunc("GET /v1/networks", s.handleListNetworks)
	m.HandleFunc("GET /v1/networks/{name}", s.handleGetNetwork)
	m.HandleFunc("DELETE /v1/networks/{name}", s.handleDeleteNetwork)
	m.HandleFunc("POST /v1/pools", s.handleCreatePool)
	m.HandleFunc("GET /v1/pools", s.handleListPools)
	m.HandleFunc("GET /v1/pools/{name}", s.handleGetPool)
	m.HandleFunc("DELETE /v1/pools/{name}", s.handleDeletePool)
	m.HandleFunc("GET /v1/pools/{name}/volumes", s.handleListVolumes)
	m.HandleFunc("POST /v1/pools/{name}/volumes", s.handleCreateVolume)
	m.HandleFunc("GET /v1/pools/{name}/volumes/{volume}", s.handleGetVolume)
	m.HandleFunc("DELETE /v1/pools/{name}/volumes/{volume}", s.handleDeleteVolume)
	m.HandleFunc("POST /v1/pools/{name}/imports", s.handleImportVM)
	m.HandleFunc("GET /v1/usage", s.handleUsage)
	m.HandleFunc("GET /v1/audit", s.handleAudit)
	m.Handle("GET /metrics", s.metrics())
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusNotFound, api.Error{Message: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	return m
}

func (s *server) metrics() http.Handler {
	if s.opts.Metrics != nil {
		return s.opts.Metrics
	}
	return http.NotFoundHandler()
}

// httpError maps an error to its status code: the one place that does.
func httpError(w http.ResponseWriter, err error) {
	var fe *service.FieldError
	code := http.StatusInternalServerError
	body := api.Error{Message: err.Error()}
	switch {
	case errors.As(err, &fe):
		code, body.Field = http.StatusBadRequest, fe.Field
	case errors.As(err, new(*http.MaxBytesError)):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, service.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, store.ErrNotFound), errors.Is(err, service.ErrNoSuchHost):
		code = http.StatusNotFound
	case errors.Is(err, store.ErrExists), errors.Is(err, service.ErrBusy), errors.Is(err, store.ErrConflict), errors.Is(err, service.ErrNoHost):
		code = http.StatusConflict
	case errors.Is(err, service.ErrNotHere):
		code = http.StatusMisdirectedRequest
	case errors.Is(err, service.ErrVMM):
		code = http.StatusBadGateway
	case errors.Is(err, store.ErrUnavailable):
		code = http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	}
	WriteJSON(w, code, body)
}

// WriteJSON answers with status code and v in JSON.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// DecodeObject reads a request body, one JSON object, into v, refusing
// unknown fields by name; what names the expected object in the error.
// Every handler that takes a JSON body uses it.
func DecodeObject(r *http.Request, v any, what string) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, MaxBody+1)) // +1: the guard's MaxBytesReader then sees a body too large
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var tl *http.MaxBytesError
		switch {
		case errors.As(err, &tl):
			// The guard's http.MaxBytesReader cut the body: httpError
			// answers 413.
			return fmt.Errorf("request body larger than the agent's limit of %d bytes: %w", tl.Limit, err)
		case errors.As(err, &te):
			return &service.FieldError{Field: te.Field, Msg: fmt.Sprintf("want a %s, not a JSON %s", te.Type, te.Value)}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return &service.FieldError{Field: f, Msg: "unknown field"}
		}
		return fmt.Errorf("%w: body is not %s in JSON: %v", service.ErrInvalid, what, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: body holds more than one JSON object", service.ErrInvalid)
	}
	return nil
}
