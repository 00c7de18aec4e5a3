package agent

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
)

const maxBody = 1 << 20

// serve starts the API listeners.
func (a *Agent) serve() error {
	h := a.routes()
	if a.cfg.Socket != "" {
		l, err := listenUnix(a.cfg.Socket)
		if err != nil {
			return err
		}
		a.start(l, h)
	}
	if a.cfg.Listen != "" {
		if a.cfg.TLSCert == "" || a.cfg.TLSKey == "" || a.cfg.TokenFile == "" {
			return errors.New("agent: --listen needs --tls-cert, --tls-key and --token-file: the TCP API requires TLS and bearer tokens")
		}
		tokens, err := loadTokens(a.cfg.TokenFile)
		if err != nil {
			return err
		}
		cert, err := tls.LoadX509KeyPair(a.cfg.TLSCert, a.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("agent: TLS certificate: %w", err)
		}
		l, err := tls.Listen("tcp", a.cfg.Listen, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			return fmt.Errorf("agent: listen on %s: %w", a.cfg.Listen, err)
		}
		a.start(l, requireToken(tokens, h))
	}
	return nil
}

func (a *Agent) start(l net.Listener, h http.Handler) {
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.RegisterOnShutdown(a.evStop)
	a.http = append(a.http, s)
	addr := l.Addr().String()
	if l.Addr().Network() == "unix" {
		if abs, err := filepath.Abs(addr); err == nil {
			addr = abs
		}
	}
	a.addrs = append(a.addrs, l.Addr().Network()+":"+addr)
	go s.Serve(l)
}

// listenUnix listens on path with mode 0600 in a 0700 directory (only the
// agent's user, root in production, may drive the agent). A stale socket
// left by a dead agent is replaced; a live one is an error.
func listenUnix(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("agent: socket directory: %w", err)
		}
	}
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("agent: another agent is serving on %s", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("agent: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("agent: chmod %s: %w", path, err)
	}
	return l, nil
}

func loadTokens(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent: token file: %w", err)
	}
	var toks []string
	for _, l := range strings.Split(string(b), "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			toks = append(toks, t)
		}
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("agent: token file %s holds no tokens", path)
	}
	return toks, nil
}

// requireToken lets through requests with one of tokens as bearer token.
func requireToken(tokens []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		valid := false
		for _, t := range tokens {
			// Compare all tokens in constant time: no timing hint on which matched.
			if ok && subtle.ConstantTimeCompare([]byte(got), []byte(t)) == 1 {
				valid = true
			}
		}
		if !valid {
			w.Header().Set("WWW-Authenticate", `Bearer realm="govisor"`)
			writeJSON(w, http.StatusUnauthorized, api.Error{Message: "a valid bearer token is required"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Routes are the patterns ("METHOD /path") the agent's API serves, in the
// order routes registers them, and "/" for the 404 of everything else. The
// api package's test checks them against openapi.yaml both ways.
func Routes() []string {
	return slices.Clone((&Agent{}).routes().(*routeMux).patterns)
}

// routeMux is a ServeMux that records the patterns registered on it.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

func (a *Agent) routes() http.Handler {
	m := &routeMux{ServeMux: http.NewServeMux()}
	m.HandleFunc("POST /v1/vms", a.handleCreate)
	m.HandleFunc("GET /v1/vms", a.handleList)
	m.HandleFunc("GET /v1/vms/{name}", a.handleGet)
	m.HandleFunc("PUT /v1/vms/{name}", a.handleApply)
	m.HandleFunc("DELETE /v1/vms/{name}", a.handleDelete)
	m.HandleFunc("POST /v1/vms/{name}/{action}", a.handleAction)
	m.HandleFunc("GET /v1/vms/{name}/console", a.handleConsole)
	m.HandleFunc("POST /v1/vms/{name}/snapshot", a.handleSnapshot)
	m.HandleFunc("POST /v1/vms/{name}/disks", a.handleAttachDisk)
	m.HandleFunc("DELETE /v1/vms/{name}/disks/{index}", a.handleDetachDisk)
	m.HandleFunc("GET /v1/vms/{name}/snapshots", a.handleSnapshots)
	m.HandleFunc("POST /v1/vms/{name}/restore", a.handleRestore)
	m.HandleFunc("POST /v1/vms/{name}/migrate", a.handleMigrate)
	m.HandleFunc("DELETE /v1/vms/{name}/migrate", a.handleCancelMigrate)
	m.HandleFunc("POST /v1/vms/{name}/incoming", a.handleIncoming)
	m.HandleFunc("DELETE /v1/vms/{name}/incoming", a.handleCancelIncoming)
	m.HandleFunc("GET /v1/events", a.handleEvents)
	m.HandleFunc("GET /v1/host", a.handleHost)
	m.HandleFunc("GET /v1/hosts", a.handleHosts)
	m.HandleFunc("POST /v1/networks", a.handleCreateNetwork)
	m.HandleFunc("GET /v1/networks", a.handleListNetworks)
	m.HandleFunc("GET /v1/networks/{name}", a.handleGetNetwork)
	m.HandleFunc("DELETE /v1/networks/{name}", a.handleDeleteNetwork)
	m.HandleFunc("POST /v1/pools", a.handleCreatePool)
	m.HandleFunc("GET /v1/pools", a.handleListPools)
	m.HandleFunc("GET /v1/pools/{name}", a.handleGetPool)
	m.HandleFunc("DELETE /v1/pools/{name}", a.handleDeletePool)
	m.HandleFunc("GET /v1/pools/{name}/volumes", a.handleListVolumes)
	m.HandleFunc("POST /v1/pools/{name}/volumes", a.handleCreateVolume)
	m.HandleFunc("GET /v1/pools/{name}/volumes/{volume}", a.handleGetVolume)
	m.HandleFunc("DELETE /v1/pools/{name}/volumes/{volume}", a.handleDeleteVolume)
	m.HandleFunc("GET /v1/usage", a.handleUsage)
	m.Handle("GET /metrics", a.metricsHandler())
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, api.Error{Message: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	return m
}

// httpError maps an error to its status code: the one place that does.
func httpError(w http.ResponseWriter, err error) {
	var fe *FieldError
	code := http.StatusInternalServerError
	body := api.Error{Message: err.Error()}
	switch {
	case errors.As(err, &fe):
		code, body.Field = http.StatusBadRequest, fe.Field
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, store.ErrExists), errors.Is(err, ErrBusy), errors.Is(err, store.ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, ErrNotHere):
		code = http.StatusMisdirectedRequest
	case errors.Is(err, ErrVMM):
		code = http.StatusBadGateway
	case errors.Is(err, store.ErrUnavailable):
		code = http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	}
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func toAPI(r store.Record) api.VM {
	v := api.VM{Spec: r.Desired.Spec, Desired: r.Desired.Power, Host: r.Desired.Host, Status: api.VMStatus{State: api.StatePending}}
	if r.Status != nil {
		v.Status = *r.Status
	}
	return v
}

func (a *Agent) handleCreate(w http.ResponseWriter, r *http.Request) {
	var s api.VMSpec
	err := decodeObject(r, &s, "a VM definition")
	if err == nil {
		s, err = a.resolveSpec(r.Context(), s)
	}
	if err == nil {
		s, err = normalize(s, a.hostMiB)
	}
	if err != nil {
		httpError(w, err)
		return
	}
	d := store.Desired{Spec: s, Power: api.PowerRunning, Host: a.cfg.HostName}
	if r.URL.Query().Get("start") == "false" {
		d.Power = api.PowerStopped
	}
	if err := a.st.CreateVM(r.Context(), d); err != nil {
		httpError(w, err)
		return
	}
	a.poke()
	writeJSON(w, http.StatusCreated, toAPI(store.Record{Desired: d}))
}

// handleApply creates the VM or replaces its definition, keeping its
// power state; a new definition takes effect at the VM's next start.
// The Govisor-Apply header says created, updated or unchanged.
func (a *Agent) handleApply(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var s api.VMSpec
	err := decodeObject(r, &s, "a VM definition")
	if err == nil && s.Name != "" && s.Name != name {
		err = &FieldError{"name", fmt.Sprintf("%q differs from %q in the URL", s.Name, name)}
	}
	if err == nil {
		s.Name = name
		s, err = a.resolveSpec(r.Context(), s)
	}
	if err == nil {
		s, err = normalize(s, a.hostMiB)
	}
	if err != nil {
		httpError(w, err)
		return
	}
	result := "updated"
	d, err := a.st.UpdateVM(r.Context(), name, func(d *store.Desired) error {
		if reflect.DeepEqual(d.Spec, s) {
			result = "unchanged"
		}
		d.Spec = s
		return nil
	})
	code := http.StatusOK
	if errors.Is(err, store.ErrNotFound) {
		d = store.Desired{Spec: s, Power: api.PowerRunning, Host: a.cfg.HostName}
		err, result, code = a.st.CreateVM(r.Context(), d), "created", http.StatusCreated
	}
	if err != nil {
		httpError(w, err)
		return
	}
	a.poke()
	rec, err := a.st.GetVM(r.Context(), name)
	if err != nil {
		rec = store.Record{Desired: d}
	}
	w.Header().Set("Govisor-Apply", result)
	writeJSON(w, code, toAPI(rec))
}

func (a *Agent) handleList(w http.ResponseWriter, r *http.Request) {
	recs, _, err := a.st.ListVMs(r.Context())
	if err != nil {
		httpError(w, err)
		return
	}
	out := api.VMList{Items: []api.VM{}}
	for _, rec := range recs {
		out.Items = append(out.Items, toAPI(rec))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *Agent) handleGet(w http.ResponseWriter, r *http.Request) {
	rec, err := a.st.GetVM(r.Context(), r.PathValue("name"))
	if err != nil {
		httpError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toAPI(rec))
}

// validName answers 404 for names no VM can have; names become paths
// under the state directory.
func validName(w http.ResponseWriter, name string) bool {
	if nameRE.MatchString(name) {
		return true
	}
	httpError(w, fmt.Errorf("%w: %q", store.ErrNotFound, name))
	return false
}

func (a *Agent) handleDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !validName(w, name) {
		return
	}
	err := a.st.DeleteVM(r.Context(), name, func(rec store.Record) error {
		a.mu.Lock()
		_, live := a.procs[name]
		a.mu.Unlock()
		st := api.StatePending
		if rec.Status != nil {
			st = rec.Status.State
		}
		if rec.Desired.Power != api.PowerStopped || live || st == api.StateRunning || st == api.StatePaused || st == api.StateStopping {
			return fmt.Errorf("%w: VM %s is %s (desired %s): stop it first", ErrBusy, name, st, rec.Desired.Power)
		}
		return nil
	})
	if err != nil {
		httpError(w, err)
		return
	}
	os.RemoveAll(a.vmDir(name))
	w.WriteHeader(http.StatusNoContent)
}

func (a *Agent) handleConsole(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !validName(w, name) {
		return
	}
	rec, err := a.st.GetVM(r.Context(), name)
	if err != nil {
		httpError(w, err)
		return
	}
	if rec.Desired.Host != a.cfg.HostName {
		httpError(w, fmt.Errorf("%w: %s runs on %s; ask that host's agent", ErrNotHere, name, rec.Desired.Host))
		return
	}
	if websocket.IsWebSocketUpgrade(r) {
		a.handleConsoleWS(w, r, name)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	f, err := os.Open(a.ConsolePath(name))
	if errors.Is(err, os.ErrNotExist) {
		return // never started: an empty console
	}
	if err != nil {
		httpError(w, fmt.Errorf("agent: console of %s: %w", name, err))
		return
	}
	defer f.Close()
	// The last MiB at most: a chatty guest's log grows without bound.
	if fi, err := f.Stat(); err == nil && fi.Size() > maxBody {
		f.Seek(fi.Size()-maxBody, io.SeekStart)
	}
	io.Copy(w, f)
}

func (a *Agent) handleHost(w http.ResponseWriter, r *http.Request) {
	recs, _, err := a.st.ListVMs(r.Context())
	if err != nil {
		httpError(w, err)
		return
	}
	h := a.hostInfo()
	for _, rec := range recs {
		if rec.Desired.Host != h.Name {
			continue
		}
		h.VMs++
		if rec.Status != nil && rec.Status.State == api.StateRunning {
			h.RunningVMs++
		}
		if rec.Desired.Power == api.PowerRunning {
			mib, _ := api.ParseMemoryMiB(rec.Desired.Spec.Memory)
			h.AllocatedMiB += mib
		}
	}
	writeJSON(w, http.StatusOK, h)
}

func (a *Agent) handleHosts(w http.ResponseWriter, r *http.Request) {
	hs, err := a.st.Hosts(r.Context())
	if err != nil {
		httpError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.HostList{Items: append([]api.Host{}, hs...)})
}
