// Package vmmapi is the control API of one VMM process: an HTTP/JSON API on
// a Unix socket (like Firecracker's) through which the host agent or a
// user pauses, resumes, snapshots and stops the VM that process runs.
package vmmapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/govisor/govisor/internal/unixsock"
)

// Controller is what the API drives: the running machine.
type Controller interface {
	Pause() error
	Resume() error
	// Snapshot saves the machine's full state and memory to dir (pausing it
	// meanwhile; it runs again afterwards if it was running).
	Snapshot(dir string) error
	// Stop ends the VM at once, as pulling the power would.
	Stop() error
	// Shutdown asks the guest to shut down (the ACPI power button).
	Shutdown() error
	// SetBalloon asks the guest to give mib MiB of its memory back to the host.
	SetBalloon(mib uint64) error
	// Migrate live-migrates the VM to a VMM started with --incoming at req.To;
	// on success this VMM's VM has stopped.
	// Migrate must let MigrateProgress and CancelMigrate be called while
	// it runs (the API serves them from other goroutines).
	Migrate(req MigrateRequest) (MigrateResult, error)
	// MigrateProgress reports the latest outgoing migration.
	MigrateProgress() MigrateProgress
	// CancelMigrate cancels the running outgoing migration (the VM keeps
	// running here); it fails when none runs.
	CancelMigrate() error
	// Stats returns the activity counters.
	Stats() Stats
	Info() Info
}

// Info describes the VM a VMM runs.
type Info struct {
	State     string   `json:"state"` // running, paused
	CPUs      int      `json:"cpus"`
	MemoryMiB uint64   `json:"memory_mib"`
	KVM       string   `json:"kvm"`
	Template  string   `json:"cpu_template"`
	Exits     []uint64 `json:"exits_per_vcpu"`
	Emulated  uint64   `json:"emulated_instructions"`
	Balloon   *Balloon `json:"balloon,omitempty"`
	// Landlock says how the jail's Landlock rules confine the VMM ("abi
	// N: ...", or "off: why" where the kernel lacks it); empty unjailed.
	Landlock string `json:"landlock,omitempty"`
}

// Balloon is the memory balloon's state and the guest's own statistics.
type Balloon struct {
	TargetMiB     uint64 `json:"target_mib"`
	ActualMiB     uint64 `json:"actual_mib"`
	GuestFreeMiB  uint64 `json:"guest_free_mib,omitempty"`
	GuestAvailMiB uint64 `json:"guest_available_mib,omitempty"`
}

// MigrateGuestRebooted begins the error of a migration that ended because
// the guest rebooted: the VMM runs the rebooted guest, which a new
// migration (to a new receiving VMM) can move.
const MigrateGuestRebooted = "the guest rebooted during the migration"

// MigrateRequest is the body of PUT /migrate.
type MigrateRequest struct {
	To            string `json:"to"`                        // host:port of the destination VMM, or unix:PATH on this host
	MaxDowntimeMS int    `json:"max_downtime_ms,omitempty"` // default 300
	Bandwidth     int64  `json:"bandwidth,omitempty"`       // bytes per second, 0 = unlimited
	AutoConverge  bool   `json:"auto_converge,omitempty"`
	// MirrorDisks copies every disk to the destination's own disks (its
	// --disk images) during the migration, for hosts without shared storage.
	MirrorDisks bool `json:"mirror_disks,omitempty"`
	// PostCopy switches to post-copy when pre-copy cannot meet the
	// downtime limit: the destination runs at once and fetches the pages it
	// lacks on demand. The VM is lost if the link fails before they all
	// arrived. Memory only: not with MirrorDisks.
	PostCopy bool `json:"post_copy,omitempty"`
	// TLSCert, TLSKey and TLSCA, given together, secure the migration with
	// mutual TLS: this VMM presents the certificate and verifies the
	// destination's against the CA bundle (files on the VMM's host).
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`
	TLSCA   string `json:"tls_ca,omitempty"`
	// LeaseTo ("HOST/VM") and LeaseNonce hand this VMM's disk leases to
	// the destination at the handover (shared storage; the destination
	// adopts them with the same nonce: vmmconfig.Config.AdoptLeases).
	LeaseTo    string `json:"lease_to,omitempty"`
	LeaseNonce uint64 `json:"lease_nonce,omitempty"`
}

// MigratedFile is the file a VMM writes in its working directory (the VM's
// folder) when it handed its guest to a live migration's destination,
// just before it exits: the machine-readable end of the migration for an
// agent that was not watching (Migrated, JSON).
const MigratedFile = "migrated.json"

// Migrated is the content of MigratedFile.
type Migrated struct {
	To     string         `json:"to"`
	Time   time.Time      `json:"time"`
	Result *MigrateResult `json:"result,omitempty"`
}

// MigrateResult reports a finished migration.
type MigrateResult struct {
	Rounds     int     `json:"rounds"`
	BytesSent  int64   `json:"bytes_sent"`
	PagesSent  uint64  `json:"pages_sent"`
	ZeroPages  uint64  `json:"zero_pages"`
	TotalMS    float64 `json:"total_ms"`
	DowntimeMS float64 `json:"downtime_ms"`
	// PostCopyPages is how many pages went after the destination started
	// (post-copy); PostCopyRequested of them because the guest waited on them.
	PostCopyPages     uint64 `json:"post_copy_pages,omitempty"`
	PostCopyRequested uint64 `json:"post_copy_requested,omitempty"`
}

// BalloonRequest is the body of PUT /vm/balloon.
type BalloonRequest struct {
	TargetMiB uint64 `json:"target_mib"`
}

// SnapshotRequest is the body of PUT /snapshot.
type SnapshotRequest struct {
	Dir string `json:"dir"`
}

// apiError is every error body.
type apiError struct {
	Error string `json:"error"`
}

// replyJSON writes v as the JSON answer with status code.
func replyJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Handler serves the API for c.
func Handler(c Controller) http.Handler {
	mux := http.NewServeMux()
	reply := replyJSON
	do := func(w http.ResponseWriter, err error) {
		if err != nil {
			reply(w, http.StatusConflict, apiError{err.Error()})
			return
		}
		reply(w, http.StatusOK, c.Info())
	}
	mux.HandleFunc("GET /vm", func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, c.Info()) })
	mux.HandleFunc("PUT /vm/pause", func(w http.ResponseWriter, r *http.Request) { do(w, c.Pause()) })
	mux.HandleFunc("PUT /vm/resume", func(w http.ResponseWriter, r *http.Request) { do(w, c.Resume()) })
	mux.HandleFunc("PUT /vm/stop", func(w http.ResponseWriter, r *http.Request) { do(w, c.Stop()) })
	mux.HandleFunc("PUT /vm/shutdown", func(w http.ResponseWriter, r *http.Request) { do(w, c.Shutdown()) })
	mux.HandleFunc("PUT /vm/balloon", func(w http.ResponseWriter, r *http.Request) {
		var req BalloonRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			reply(w, http.StatusBadRequest, apiError{"bad balloon request: " + err.Error()})
			return
		}
		do(w, c.SetBalloon(req.TargetMiB))
	})
	mux.HandleFunc("PUT /migrate", func(w http.ResponseWriter, r *http.Request) {
		var req MigrateRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || req.To == "" {
			reply(w, http.StatusBadRequest, apiError{`bad migrate request: give "to": "host:port" of a govisor run --incoming VMM`})
			return
		}
		res, err := c.Migrate(req)
		if err != nil {
			reply(w, http.StatusConflict, apiError{err.Error()})
			return
		}
		reply(w, http.StatusOK, res)
	})
	mux.HandleFunc("GET /migrate", func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, c.MigrateProgress()) })
	mux.HandleFunc("DELETE /migrate", func(w http.ResponseWriter, r *http.Request) {
		if err := c.CancelMigrate(); err != nil {
			reply(w, http.StatusConflict, apiError{err.Error()})
			return
		}
		reply(w, http.StatusOK, c.MigrateProgress())
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, c.Stats()) })
	mux.HandleFunc("PUT /snapshot", func(w http.ResponseWriter, r *http.Request) {
		var req SnapshotRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			reply(w, http.StatusBadRequest, apiError{"bad snapshot request: " + err.Error()})
			return
		}
		if req.Dir == "" {
			reply(w, http.StatusBadRequest, apiError{`field "dir" is required: the snapshot folder to create`})
			return
		}
		do(w, c.Snapshot(req.Dir))
	})
	registerDiskRoutes(mux, c)
	registerFenceRoutes(mux, c)
	return mux
}

// Listen creates the API's Unix socket at path, mode 0600: only its owner
// may control the VM.
func Listen(path string) (net.Listener, error) {
	l, err := unixsock.ListenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("vmmapi: listen on %s: %w", path, err)
	}
	return l, nil
}

// ServeListener serves the API on l until ctx ends, then removes the socket.
func ServeListener(ctx context.Context, l net.Listener, c Controller) error {
	srv := &http.Server{Handler: Handler(c), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
		if a, ok := l.Addr().(*net.UnixAddr); ok {
			os.Remove(a.Name)
		}
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
