package httpapi

import (
	"net/http"

	"github.com/govisor/govisor/api"
)

func (s *server) handleCreateNetwork(w http.ResponseWriter, r *http.Request) {
	var n api.Network
	if err := DecodeObject(r, &n, "a network definition"); err != nil {
		httpError(w, err)
		return
	}
	n, err := s.svc.CreateNetwork(r.Context(), n)
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, n)
}

func (s *server) handleListNetworks(w http.ResponseWriter, r *http.Request) {
	l, err := s.svc.ListNetworks(r.Context())
	answer(w, l, err)
}

func (s *server) handleGetNetwork(w http.ResponseWriter, r *http.Request) {
	n, err := s.svc.GetNetwork(r.Context(), r.PathValue("name"))
	answer(w, n, err)
}

func (s *server) handleDeleteNetwork(w http.ResponseWriter, r *http.Request) {
	answerDeleted(w, s.svc.DeleteNetwork(r.Context(), r.PathValue("name")))
}

func (s *server) handleCreatePool(w http.ResponseWriter, r *http.Request) {
	var p api.Pool
	if err := DecodeObject(r, &p, "a storage pool definition"); err != nil {
		httpError(w, err)
		return
	}
	p, err := s.svc.CreatePool(r.Context(), p)
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, p)
}

func (s *server) handleListPools(w http.ResponseWriter, r *http.Request) {
	l, err := s.svc.ListPools(r.Context())
	answer(w, l, err)
}

func (s *server) handleGetPool(w http.ResponseWriter, r *http.Request) {
	p, err := s.svc.GetPool(r.Context(), r.PathValue("name"))
	answer(w, p, err)
}

func (s *server) handleDeletePool(w http.ResponseWriter, r *http.Request) {
	answerDeleted(w, s.svc.DeletePool(r.Context(), r.PathValue("name")))
}

func (s *server) handleListVolumes(w http.ResponseWriter, r *http.Request) {
	l, err := s.svc.ListVolumes(r.Context(), r.PathValue("name"))
	answer(w, l, err)
}

func (s *server) handleGetVolume(w http.ResponseWriter, r *http.Request) {
	v, err := s.svc.GetVolume(r.Context(), r.PathValue("name"), r.PathValue("volume"))
	answer(w, v, err)
}

func (s *server) handleDeleteVolume(w http.ResponseWriter, r *http.Request) {
	answerDeleted(w, s.svc.DeleteVolume(r.Context(), r.PathValue("name"), r.PathValue("volume")))
}

func (s *server) handleCreateVolume(w http.ResponseWriter, r *http.Request) {
	var c api.VolumeCreate
	if err := DecodeObject(r, &c, "a volume to create"); err != nil {
		httpError(w, err)
		return
	}
	v, err := s.svc.CreateVolume(r.Context(), r.PathValue("name"), c)
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, v)
}

// answer answers 200 with v, or the error.
func answer(w http.ResponseWriter, v any, err error) {
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

// answerDeleted answers 204, or the error.
func answerDeleted(w http.ResponseWriter, err error) {
	if err != nil {
		httpError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) handleImportVM(w http.ResponseWriter, r *http.Request) {
	var req api.ImportRequest
	if err := DecodeObject(r, &req, "a VM to import"); err != nil {
		httpError(w, err)
		return
	}
	res, err := s.svc.ImportVM(r.Context(), r.PathValue("name"), req)
	if err != nil {
		httpError(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, res)
}
