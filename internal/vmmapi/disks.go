package vmmapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
)

// Disk hotplug: GET /vm/disks lists the disks, PUT /vm/disks attaches one
// to the running VM, DELETE /vm/disks/{name} asks the guest to release a
// hot-plugged one (it is gone once the guest has ejected it).

// DiskRequest is the body of PUT /vm/disks.
type DiskRequest struct {
	Path     string `json:"path"` // absolute path of the image on the VMM's host
	ReadOnly bool   `json:"readonly,omitempty"`
	Format   string `json:"format,omitempty"` // raw, qcow2, vmdk, vhd, vhdx, vdi; empty: probe
}

// Disk is one of the VM's disks.
type Disk struct {
	Name       string `json:"name"` // vda, vdb, ...
	Path       string `json:"path"`
	ReadOnly   bool   `json:"readonly,omitempty"`
	Format     string `json:"format,omitempty"`
	Slot       int    `json:"pci_slot"`
	Hotplugged bool   `json:"hotplugged,omitempty"`
	State      string `json:"state"` // attached, detaching
}

// DiskController is implemented by Controllers whose VM can hot-plug
// disks; the disk routes answer 501 for others.
type DiskController interface {
	Disks() ([]Disk, error)
	// AttachDisk plugs a new disk into the running VM.
	AttachDisk(req DiskRequest) (Disk, error)
	// DetachDisk asks the guest to release the hot-plugged disk name.
	DetachDisk(name string) error
}

// Errors a DiskController wraps so that the API answers with the right status.
var (
	// ErrDiskNotFound: no disk has that name (404).
	ErrDiskNotFound = errors.New("vmmapi: no such disk")
	// ErrDiskBadRequest: the request cannot be served as given (400).
	ErrDiskBadRequest = errors.New("vmmapi: bad disk request")
)

// diskStatus maps a DiskController error to an HTTP status.
func diskStatus(err error) int {
	switch {
	case errors.Is(err, ErrDiskNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrDiskBadRequest):
		return http.StatusBadRequest
	}
	return http.StatusConflict
}

// registerDiskRoutes adds the disk routes to mux.
func registerDiskRoutes(mux *http.ServeMux, c Controller) {
	reply := replyJSON
	dc, ok := c.(DiskController)
	if !ok {
		unsupported := func(w http.ResponseWriter, r *http.Request) {
			reply(w, http.StatusNotImplemented, apiError{"this VMM cannot hot-plug disks"})
		}
		mux.HandleFunc("GET /vm/disks", unsupported)
		mux.HandleFunc("PUT /vm/disks", unsupported)
		mux.HandleFunc("DELETE /vm/disks/{name}", unsupported)
		return
	}
	fail := func(w http.ResponseWriter, err error) { reply(w, diskStatus(err), apiError{err.Error()}) }
	mux.HandleFunc("GET /vm/disks", func(w http.ResponseWriter, r *http.Request) {
		ds, err := dc.Disks()
		if err != nil {
			fail(w, err)
			return
		}
		if ds == nil {
			ds = []Disk{}
		}
		reply(w, http.StatusOK, ds)
	})
	mux.HandleFunc("PUT /vm/disks", func(w http.ResponseWriter, r *http.Request) {
		var req DiskRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			reply(w, http.StatusBadRequest, apiError{"bad disk request: " + err.Error()})
			return
		}
		if !filepath.IsAbs(req.Path) {
			reply(w, http.StatusBadRequest, apiError{fmt.Sprintf(`bad disk request: "path" must be an absolute path to an image, not %q`, req.Path)})
			return
		}
		d, err := dc.AttachDisk(req)
		if err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, d)
	})
	mux.HandleFunc("DELETE /vm/disks/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := dc.DetachDisk(name); err != nil {
			fail(w, err)
			return
		}
		// The guest has been asked; the disk leaves when it ejects it.
		reply(w, http.StatusOK, map[string]string{"name": name, "state": "detaching"})
	})
}
