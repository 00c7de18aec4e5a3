package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/diskimage/ova"
	"github.com/govisor/govisor/internal/vmimport"
	"github.com/govisor/govisor/internal/vmimport/hyperv"
	"github.com/govisor/govisor/internal/vmimport/importer"
)

// ImportVM converts a VM of another hypervisor, whose configuration is a
// file on this host, into volumes of a pool on this host, and returns a
// VM definition using them with the report of what was mapped and
// dropped. It defines no VM: the definition needs networks for its NICs,
// and a kernel (or firmware boot) the source does not say.
func (ps *poolService) ImportVM(ctx context.Context, pool string, r api.ImportRequest) (api.ImportResult, error) {
	p, err := ps.localPool(ctx, pool)
	if err == nil {
		err = checkImport(&r)
	}
	if err != nil {
		return api.ImportResult{}, err
	}
	tr := &importTracker{ps: ps, pool: p, format: r.Format}
	res, err := importer.Import(ctx, importer.Options{Source: r.Source, Path: r.Path, Name: r.Name, OutDir: p.Path, Format: r.Format,
		Progress: tr.progress, Started: tr.start})
	tr.finish()
	switch {
	case err == nil:
	case errors.Is(err, importer.ErrExists):
		return api.ImportResult{}, errf(store.ErrExists, "%v", err)
	case errors.Is(err, vmimport.ErrBadConfig), errors.Is(err, hyperv.ErrVMCX), errors.Is(err, os.ErrNotExist),
		errors.Is(err, ova.ErrBadArchive), errors.Is(err, ova.ErrDigestMismatch),
		errors.Is(err, diskimage.ErrUnsupported), errors.Is(err, diskimage.ErrParent), errors.Is(err, diskimage.ErrUnknownFormat):
		return api.ImportResult{}, fieldErr("path", err.Error())
	default:
		return api.ImportResult{}, fmt.Errorf("agent: %w", err)
	}
	vm := res.VM
	out := api.ImportResult{Firmware: vm.Firmware, Mapped: vm.Mapped, Dropped: vm.Dropped, Volumes: []api.Volume{},
		Spec: api.VMSpec{Name: vm.Name, CPUs: vm.CPUs, UUID: vm.UUID}}
	if vm.MemoryMiB > 0 {
		out.Spec.Memory = fmt.Sprintf("%dM", vm.MemoryMiB)
	}
	if vm.UUID != "" {
		// A second import of one source is a copy: like vSphere's "I
		// copied it", the copy gets a new identity when it is defined.
		if other, err := uuidOwner(ctx, ps.st, vm.UUID, vm.Name); err == nil && other != "" {
			out.Spec.UUID = ""
			out.Dropped = append(out.Dropped, fmt.Sprintf("uuid %s: VM %s has it already, so this copy gets a new one when defined", vm.UUID, other))
		}
	}
	// Ready to define as it is (its NICs still need networks).
	switch vm.Firmware {
	case vmimport.FirmwareBIOS:
		out.Spec.Firmware = api.FirmwareBIOS
	case vmimport.FirmwareUEFI:
		out.Spec.Firmware = api.FirmwareUEFI
	}
	for _, d := range res.Disks {
		v, err := describeVolume(p, filepath.Base(d))
		if err != nil {
			return api.ImportResult{}, err
		}
		out.Volumes = append(out.Volumes, v)
		out.Spec.Disks = append(out.Spec.Disks, api.DiskSpec{Pool: p.Name, Volume: v.Name})
	}
	for _, n := range vm.NICs {
		out.Spec.NICs = append(out.Spec.NICs, api.NICSpec{MAC: n.MAC})
	}
	ps.log.Info("VM imported", "pool", p.Name, "source", r.Source, "path", r.Path, "name", vm.Name, "disks", len(res.Disks))
	return out, nil
}

// checkImport validates an import request.
func checkImport(r *api.ImportRequest) error {
	if !slices.Contains(importer.Sources, r.Source) {
		return fieldErr("source", fmt.Sprintf("%q: use one of %s", r.Source, strings.Join(importer.Sources, ", ")))
	}
	if !filepath.IsAbs(r.Path) {
		return fieldErr("path", fmt.Sprintf("%q: give an absolute path on the host", r.Path))
	}
	if _, err := os.Stat(r.Path); err != nil {
		return fieldErr("path", fmt.Sprintf("%s: no such file on this host", r.Path))
	}
	if r.Name != "" && !nameRE.MatchString(r.Name) {
		return fieldErr("name", fmt.Sprintf("%q: use 1-63 lower-case letters, digits and '-' (a DNS label)", r.Name))
	}
	if r.Format == "" {
		r.Format = defaultVolumeFormat
	}
	if d, err := diskimage.Lookup(r.Format); err != nil || d.Create == nil {
		return fieldErr("format", fmt.Sprintf("%q: use one of %s", r.Format, strings.Join(diskimage.Formats(), ", ")))
	}
	return nil
}

// importTracker lists the volume an import is converting, with its
// progress, as CreateVolume does (GET .../volumes shows it), so that a
// client can follow a long import.
type importTracker struct {
	ps     *poolService
	pool   api.Pool
	format string
	cur    *makingVolume
	done   func()
}

// start registers the volume at path as being made.
func (t *importTracker) start(path string, size int64) {
	t.finish()
	m, done, err := t.ps.startMaking(api.Volume{Name: filepath.Base(path), Pool: t.pool.Name, Path: path, Format: t.format, VirtualSize: size}, size)
	if err == nil {
		t.cur, t.done = m, done
	}
}

func (t *importTracker) progress(_, _ int, done, total int64) {
	if t.cur != nil {
		t.cur.progress(done, total)
	}
}

// finish unregisters the volume last started.
func (t *importTracker) finish() {
	if t.done != nil {
		t.done()
	}
	t.cur, t.done = nil, nil
}
