package httpapi

import (
	"io"
	"net/http"

	"github.com/gorilla/websocket"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
)

func (s *server) handleCreate(w http.ResponseWriter, r *http.Request) {
	var spec api.VMSpec
	if err := DecodeObject(r, &spec, "a VM definition"); err != nil {
		httpError(w, err)
		return
	}
	q := r.URL.Query()
	v, err := s.svc.CreateVM(r.Context(), spec, service.CreateOptions{NoStart: q.Get("start") == "false", Host: q.Get("host")})
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, v)
}

// handleApply creates the VM or replaces its definition, keeping its
// power state; a new definition takes effect at the VM's next start.
// The Govisor-Apply header says created, updated or unchanged.
func (s *server) handleApply(w http.ResponseWriter, r *http.Request) {
	var spec api.VMSpec
	if err := DecodeObject(r, &spec, "a VM definition"); err != nil {
		httpError(w, err)
		return
	}
	v, result, err := s.svc.ApplyVM(r.Context(), r.PathValue("name"), spec)
	if err != nil {
		httpError(w, err)
		return
	}
	code := http.StatusOK
	if result == service.Created {
		code = http.StatusCreated
	}
	w.Header().Set("Govisor-Apply", result)
	WriteJSON(w, code, v)
}

func (s *server) handleList(w http.ResponseWriter, r *http.Request) {
	l, err := s.svc.ListVMs(r.Context())
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, l)
}

func (s *server) handleGet(w http.ResponseWriter, r *http.Request) {
	v, err := s.svc.GetVM(r.Context(), r.PathValue("name"))
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

func (s *server) handleDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.svc.DeleteVM(r.Context(), r.PathValue("name")); err != nil {
		httpError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleAction serves POST /v1/vms/{name}/start|stop|force-stop|restart|
// reboot|pause|resume; with ?wait=DURATION it answers once the VM got
// there (200) or the time is up (202), else at once (202). Pause and
// resume answer 200 once done.
func (s *server) handleAction(w http.ResponseWriter, r *http.Request) {
	v, reached, err := s.svc.Act(r.Context(), service.Action{Name: r.PathValue("name"), Action: r.PathValue("action"), Wait: r.URL.Query().Get("wait")})
	answerWait(w, v, reached, err)
}

// answerWait answers an action with the VM: 200 once it got there within
// its wait, else 202.
func answerWait(w http.ResponseWriter, v api.VM, reached bool, err error) {
	if err != nil {
		httpError(w, err)
		return
	}
	code := http.StatusAccepted
	if reached {
		code = http.StatusOK
	}
	WriteJSON(w, code, v)
}

// handleConsole serves GET /v1/vms/{name}/console: the console log, or
// with Upgrade: websocket the interactive serial console.
func (s *server) handleConsole(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if websocket.IsWebSocketUpgrade(r) {
		vc, err := s.svc.AttachConsole(r.Context(), name)
		if err != nil {
			httpError(w, err)
			return
		}
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			vc.Close() // Upgrade answered the client already
			return
		}
		proxyConsole(ws, vc)
		return
	}
	f, err := s.svc.ConsoleLog(r.Context(), name)
	if err != nil {
		httpError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if f == nil {
		return // never started: an empty console
	}
	defer f.Close()
	io.Copy(w, f)
}

func (s *server) handleAttachDisk(w http.ResponseWriter, r *http.Request) {
	var d api.DiskSpec
	if err := DecodeObject(r, &d, "a disk definition"); err != nil {
		httpError(w, err)
		return
	}
	v, err := s.svc.AttachDisk(r.Context(), r.PathValue("name"), d)
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

func (s *server) handleDetachDisk(w http.ResponseWriter, r *http.Request) {
	v, err := s.svc.DetachDisk(r.Context(), r.PathValue("name"), r.PathValue("index"))
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

func (s *server) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	var req api.SnapshotRequest
	if err := DecodeObject(r, &req, "a snapshot request"); err != nil {
		httpError(w, err)
		return
	}
	snap, err := s.svc.Snapshot(r.Context(), r.PathValue("name"), req)
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, snap)
}

func (s *server) handleSnapshots(w http.ResponseWriter, r *http.Request) {
	l, err := s.svc.ListSnapshots(r.Context(), r.PathValue("name"))
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, l)
}

func (s *server) handleRestore(w http.ResponseWriter, r *http.Request) {
	var req api.RestoreRequest
	if err := DecodeObject(r, &req, "a restore request"); err != nil {
		httpError(w, err)
		return
	}
	v, reached, err := s.svc.Restore(r.Context(), r.PathValue("name"), r.URL.Query().Get("wait"), req)
	answerWait(w, v, reached, err)
}

func (s *server) handleMigrate(w http.ResponseWriter, r *http.Request) {
	var req api.MigrateRequest
	if err := DecodeObject(r, &req, "a migration request"); err != nil {
		httpError(w, err)
		return
	}
	v, err := s.svc.Migrate(r.Context(), r.PathValue("name"), req)
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

func (s *server) handleCancelMigrate(w http.ResponseWriter, r *http.Request) {
	v, err := s.svc.CancelMigrate(r.Context(), r.PathValue("name"))
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusAccepted, v)
}

func (s *server) handleIncoming(w http.ResponseWriter, r *http.Request) {
	var req api.IncomingRequest
	if err := DecodeObject(r, &req, "an incoming migration request"); err != nil {
		httpError(w, err)
		return
	}
	in, err := s.svc.Incoming(r.Context(), r.PathValue("name"), req)
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, in)
}

func (s *server) handleCancelIncoming(w http.ResponseWriter, r *http.Request) {
	if err := s.svc.CancelIncoming(r.Context(), r.PathValue("name")); err != nil {
		httpError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) handleIncomingState(w http.ResponseWriter, r *http.Request) {
	in, err := s.svc.IncomingState(r.Context(), r.PathValue("name"))
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, in)
}
