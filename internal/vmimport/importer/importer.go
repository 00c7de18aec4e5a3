// Package importer turns a VM of another hypervisor into govisor disks: it
// reads the source configuration with the parser of its kind (vmx, ovf,
// ova, vbox, hyperv), opens each disk with its differencing chain, and
// converts it into a folder (a storage pool's directory), reporting
// progress. The VM definition is the caller's to build from the result.
package importer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/govisor/govisor/internal/diskimage"
	_ "github.com/govisor/govisor/internal/diskimage/all" // every format driver
	"github.com/govisor/govisor/internal/diskimage/convert"
	"github.com/govisor/govisor/internal/diskimage/ova"
	"github.com/govisor/govisor/internal/vmimport"
	"github.com/govisor/govisor/internal/vmimport/hyperv"
	"github.com/govisor/govisor/internal/vmimport/ovf"
	"github.com/govisor/govisor/internal/vmimport/vbox"
	"github.com/govisor/govisor/internal/vmimport/vmx"
)

// ErrExists reports a converted disk whose name is taken in OutDir.
var ErrExists = errors.New("import: a disk of that name exists")

// maxDiskSize bounds a converted disk (64 TiB, as the agent's volumes):
// a configuration may claim any capacity for a blank disk.
const maxDiskSize = 64 << 40

// Sources are the configuration kinds Import reads.
var Sources = []string{"vmx", "ova", "ovf", "vbox", "hyperv"}

// Options says what to import and where.
type Options struct {
	// Source is one of Sources; Path the configuration file (for hyperv,
	// the export folder or its Virtual Machines/*.xml).
	Source, Path string
	// Name replaces the source VM's name (a DNS label); empty derives one.
	Name string
	// OutDir receives the converted disks, named <name>-disk<N>.<format>.
	OutDir string
	// Format of the converted disks; empty means qcow2.
	Format string
	// Progress, if set, is called as disk i (from 0, of n) converts.
	Progress func(i, n int, done, total int64)
	// Started, if set, is called as each disk's conversion starts, with
	// the image it will be and its size.
	Started func(path string, size int64)
}

// Result is an imported VM: its configuration and its converted disks.
type Result struct {
	VM *vmimport.VM
	// Disks are the converted images in OutDir, in VM.Disks order.
	Disks []string
}

// Import reads the source VM and converts its disks. On error no disk is
// left in OutDir.
func Import(ctx context.Context, o Options) (res *Result, err error) {
	if o.Format == "" {
		o.Format = "qcow2"
	}
	src, err := load(o)
	if err != nil {
		return nil, err
	}
	defer src.cleanup()
	vm := src.vm
	if o.Name != "" {
		vm.Name = o.Name
	} else {
		vm.Name = DNSName(vm.Name)
	}
	res = &Result{VM: vm}
	defer func() {
		if err != nil {
			for _, d := range res.Disks {
				os.Remove(d)
			}
		}
	}()
	for i, d := range vm.Disks {
		out := filepath.Join(o.OutDir, fmt.Sprintf("%s-disk%d.%s", vm.Name, i, o.Format))
		var progress func(done, total int64)
		if o.Progress != nil {
			progress = func(done, total int64) { o.Progress(i, len(vm.Disks), done, total) }
		}
		if err := convertDisk(ctx, src, d, out, o.Format, o.Started, progress); err != nil {
			return res, fmt.Errorf("import: disk %s: %w", d.Source, err)
		}
		res.Disks = append(res.Disks, out)
	}
	return res, nil
}

// source is a parsed configuration and how to find its files.
type source struct {
	vm *vmimport.VM
	// resolve turns a chain entry into a file on this host.
	resolve func(name string) (string, error)
	cleanup func()
}

func readConfig(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, vmimport.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("import: read %s: %w", path, err)
	}
	if len(b) > vmimport.MaxFileSize {
		return nil, fmt.Errorf("import: %s is larger than %d bytes: not a VM configuration", path, vmimport.MaxFileSize)
	}
	return b, nil
}

// nextTo resolves names relative to dir (absolute ones as they are).
func nextTo(dir string) func(string) (string, error) {
	return func(name string) (string, error) {
		if filepath.IsAbs(name) {
			return name, nil
		}
		return filepath.Join(dir, name), nil
	}
}

func load(o Options) (*source, error) {
	s := &source{cleanup: func() {}, resolve: nextTo(filepath.Dir(o.Path))}
	var err error
	switch o.Source {
	case "vmx", "ovf", "vbox":
		var text []byte
		if text, err = readConfig(o.Path); err != nil {
			return nil, err
		}
		parse := map[string]func([]byte) (*vmimport.VM, error){"vmx": vmx.Parse, "ovf": ovf.Parse, "vbox": vbox.Parse}[o.Source]
		s.vm, err = parse(text)
	case "ova":
		// A folder of its own: imports running side by side into one
		// pool must not unpack members of the same name over each other.
		tmp, err := os.MkdirTemp(o.OutDir, ".gv-import-")
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		pkg, err := ova.Unpack(o.Path, tmp)
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		s.cleanup = func() { os.RemoveAll(tmp) }
		s.resolve = func(name string) (string, error) {
			p, ok := pkg.Files[filepath.Clean(name)]
			if !ok {
				return "", fmt.Errorf("the OVA has no file %q", name)
			}
			return p, nil
		}
		if s.vm, err = ovf.Parse(pkg.OVF); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("import: %s: %w", o.Path, err)
		}
	case "hyperv":
		var cfg string
		if cfg, err = hypervConfig(o.Path); err != nil {
			return nil, err
		}
		var text []byte
		if text, err = readConfig(cfg); err != nil {
			return nil, err
		}
		s.resolve = hypervResolver(cfg)
		s.vm, err = hyperv.Parse(text)
	default:
		return nil, fmt.Errorf("import: unknown source %q (want one of %s)", o.Source, strings.Join(Sources, ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("import: %s: %w", o.Path, err)
	}
	expandGzip(s, o.OutDir)
	return s, nil
}

// DNSName turns a source VM name into a govisor VM name: lower-case
// letters, digits and '-', at most 63, "vm" when nothing is left.
func DNSName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 63 {
		out = strings.Trim(out[:63], "-")
	}
	if out == "" {
		return "vm"
	}
	return out
}

// convertDisk converts one disk, chain and all, to out: built under a
// temporary name and linked into place without replacing a file.
func convertDisk(ctx context.Context, s *source, d vmimport.Disk, out, format string, started func(string, int64), progress func(done, total int64)) (err error) {
	in, err := openChain(s, d)
	if err != nil {
		return err
	}
	var size int64
	if in != nil {
		defer in.Close()
		size = in.VirtualSize()
	}
	size = max(size, d.Capacity)
	if size <= 0 || size > maxDiskSize {
		return fmt.Errorf("a disk of %d bytes (want 1 byte to 64 TiB)", size)
	}
	if started != nil {
		started(out, size)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(out), ".gv-import-"+hex.EncodeToString(rnd[:]))
	defer os.Remove(tmp)
	dst, err := diskimage.Create(tmp, format, size, diskimage.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create %s image: %w", format, err)
	}
	if in != nil {
		if err = convert.Convert(ctx, in, dst, convert.Options{Progress: progress}); err != nil {
			dst.Close()
			return err
		}
	} else if progress != nil {
		progress(size, size)
	}
	if err = dst.Close(); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	os.Chmod(tmp, 0o600)
	if err = os.Link(tmp, out); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %s already exists: give the VM another name", ErrExists, out)
		}
		return fmt.Errorf("put %s in place: %w", out, err)
	}
	return nil
}
