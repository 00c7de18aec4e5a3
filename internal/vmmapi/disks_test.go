package vmmapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// diskVM is a VM whose disk table the API drives: attach appends a disk,
// detach marks it detaching, as a VMM does until the guest ejects it.
type diskVM struct {
	fakeVM
	disks []Disk
}

func (d *diskVM) Disks() ([]Disk, error) { return d.disks, nil }

func (d *diskVM) AttachDisk(req DiskRequest) (Disk, error) {
	if strings.Contains(req.Path, "missing") {
		return Disk{}, fmt.Errorf("%w: open %s: no such file", ErrDiskBadRequest, req.Path)
	}
	if len(d.disks) >= 3 {
		return Disk{}, errors.New("no free PCI slot")
	}
	disk := Disk{Name: fmt.Sprintf("vd%c", 'a'+len(d.disks)), Path: req.Path, ReadOnly: req.ReadOnly, Format: req.Format,
		Slot: 1 + len(d.disks), Hotplugged: true, State: "attached"}
	d.disks = append(d.disks, disk)
	return disk, nil
}

func (d *diskVM) DetachDisk(name string) error {
	for i := range d.disks {
		if d.disks[i].Name == name {
			d.disks[i].State = "detaching"
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrDiskNotFound, name)
}

func TestDiskRoutes(t *testing.T) {
	vm := &diskVM{fakeVM: fakeVM{state: "running"}}
	h := Handler(vm)
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string // in the body
	}{
		{"GET", "/vm/disks", "", 200, "[]"},
		{"PUT", "/vm/disks", `{"path":"/img/a.raw","readonly":true}`, 200, `"name":"vda"`},
		{"PUT", "/vm/disks", `{"path":"/img/b.qcow2","format":"qcow2"}`, 200, `"pci_slot":2`},
		{"PUT", "/vm/disks", `{"path":"relative.raw"}`, 400, "absolute path"},
		{"PUT", "/vm/disks", `{"path":"/img/c","size":1}`, 400, "unknown field"},
		{"PUT", "/vm/disks", `not json`, 400, "bad disk request"},
		{"PUT", "/vm/disks", `{"path":"/img/missing.raw"}`, 400, "no such file"},
		{"GET", "/vm/disks", "", 200, `"path":"/img/b.qcow2"`},
		{"DELETE", "/vm/disks/vdb", "", 200, `"state":"detaching"`},
		{"DELETE", "/vm/disks/vdq", "", 404, "no such disk"},
		{"GET", "/vm/disks", "", 200, `"state":"detaching"`},
		{"PUT", "/vm/disks", `{"path":"/img/c.raw"}`, 200, `"name":"vdc"`},
		{"PUT", "/vm/disks", `{"path":"/img/d.raw"}`, 409, "no free PCI slot"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s %s %s: %d %s; want %d with %q", tc.method, tc.path, tc.body, rec.Code, rec.Body, tc.code, tc.want)
		}
	}
}

func TestDiskRoutesUnsupported(t *testing.T) {
	h := Handler(&fakeVM{state: "running"})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("PUT", "/vm/disks", strings.NewReader(`{"path":"/a"}`)))
	var e apiError
	if rec.Code != http.StatusNotImplemented || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
		t.Errorf("attach on a VMM without hotplug: %d %s", rec.Code, rec.Body)
	}
}

func TestDiskClient(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vmm.sock")
	vm := &diskVM{fakeVM: fakeVM{state: "running"}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	go ServeListener(ctx, l, vm)
	c := NewClient(sock)
	var ds []Disk
	for deadline := time.Now().Add(5 * time.Second); ; {
		if ds, err = c.Disks(t.Context()); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || len(ds) != 0 {
		t.Fatalf("Disks = %v, %v", ds, err)
	}
	d, err := c.AttachDisk(t.Context(), DiskRequest{Path: "/img/a.raw", Format: "raw"})
	if err != nil || d.Name != "vda" || d.Format != "raw" || !d.Hotplugged {
		t.Fatalf("AttachDisk = %+v, %v", d, err)
	}
	if err := c.DetachDisk(t.Context(), "vda"); err != nil {
		t.Fatalf("DetachDisk: %v", err)
	}
	if err := c.DetachDisk(t.Context(), "vd/x"); err == nil {
		t.Fatal("detaching an unknown disk succeeded")
	} else if errors.Is(err, ErrNoEndpoint) || !strings.Contains(err.Error(), "no such disk") {
		t.Fatalf("detaching an unknown disk: %v, want the API's 404 message", err)
	}
	// A route the VMM lacks (an older VMM binary) is told apart.
	if err := c.do(t.Context(), "GET", "/vm/nothing", nil, nil); !errors.Is(err, ErrNoEndpoint) {
		t.Fatalf("GET /vm/nothing: %v, want ErrNoEndpoint", err)
	}
	if err := c.do(t.Context(), "POST", "/vm/disks", nil, nil); !errors.Is(err, ErrNoEndpoint) {
		t.Fatalf("POST /vm/disks: %v, want ErrNoEndpoint", err)
	}
	if ds, err = c.Disks(t.Context()); err != nil || len(ds) != 1 || ds[0].State != "detaching" {
		t.Fatalf("Disks after detach = %+v, %v", ds, err)
	}
}
