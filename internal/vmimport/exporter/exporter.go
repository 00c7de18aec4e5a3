// Package exporter writes a VM as an OVA (DMTF DSP0243 section 5.3: a tar
// holding the OVF descriptor first, the manifest second, then the files the
// descriptor references, in order), its disks as streamOptimized VMDKs:
// the package VMware and VirtualBox import.
package exporter

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/govisor/govisor/internal/diskimage"
	_ "github.com/govisor/govisor/internal/diskimage/all" // every format driver
	"github.com/govisor/govisor/internal/diskimage/convert"
	"github.com/govisor/govisor/internal/vmimport"
	"github.com/govisor/govisor/internal/vmimport/ovf"
)

// Options says what to export.
type Options struct {
	// VM describes the machine; its Disks are ignored in favour of Images.
	VM *vmimport.VM
	// Images are the VM's disk images on this host, in boot order.
	Images []string
	// Out is the .ova file to write (replaced if it exists).
	Out string
	// Progress, if set, is called as disk i (from 0, of n) converts.
	Progress func(i, n int, done, total int64)
}

// Export writes the OVA.
func Export(ctx context.Context, o Options) (err error) {
	base := strings.TrimSuffix(filepath.Base(o.Out), filepath.Ext(o.Out))
	tmpDir, err := os.MkdirTemp(filepath.Dir(o.Out), ".gv-export-")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	var files []ovf.FileDisk
	var paths []string
	for i, img := range o.Images {
		name := fmt.Sprintf("%s-disk%d.vmdk", base, i+1)
		p := filepath.Join(tmpDir, name)
		var progress func(done, total int64)
		if o.Progress != nil {
			progress = func(done, total int64) { o.Progress(i, len(o.Images), done, total) }
		}
		capacity, err := toStreamVMDK(ctx, img, p, progress)
		if err != nil {
			return fmt.Errorf("export: disk %s: %w", img, err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		files = append(files, ovf.FileDisk{Href: name, Size: fi.Size(), Capacity: capacity})
		paths = append(paths, p)
	}
	descriptor := ovf.Marshal(o.VM, files)
	ovfName := base + ".ovf"
	var mf strings.Builder
	fmt.Fprintf(&mf, "SHA256(%s)= %x\n", ovfName, sha256.Sum256(descriptor))
	for i, p := range paths {
		sum, err := fileSHA256(p)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		fmt.Fprintf(&mf, "SHA256(%s)= %s\n", files[i].Href, sum)
	}
	tmpOut := filepath.Join(tmpDir, "out.ova")
	if err := writeTar(tmpOut, ovfName, descriptor, base+".mf", []byte(mf.String()), files, paths); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(tmpOut, o.Out); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// toStreamVMDK converts the image at src to a streamOptimized VMDK at dst
// and returns the disk's virtual size.
func toStreamVMDK(ctx context.Context, src, dst string, progress func(done, total int64)) (int64, error) {
	in, err := diskimage.Open(src, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := diskimage.Create(dst, "vmdk", in.VirtualSize(), diskimage.CreateOptions{Options: map[string]string{"subformat": "streamOptimized"}})
	if err != nil {
		return 0, err
	}
	if err := convert.Convert(ctx, in, out, convert.Options{Progress: progress}); err != nil {
		out.Close()
		return 0, err
	}
	if err := out.Close(); err != nil {
		return 0, err
	}
	return in.VirtualSize(), nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func writeTar(out, ovfName string, descriptor []byte, mfName string, mf []byte, files []ovf.FileDisk, paths []string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	now := time.Now().Truncate(time.Second)
	hdr := func(name string, size int64) *tar.Header {
		// USTAR, as DSP0243 section 5.3 asks (names up to 100 bytes).
		return &tar.Header{Name: name, Size: size, Mode: 0o644, ModTime: now, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
	}
	for _, m := range []struct {
		name string
		b    []byte
	}{{ovfName, descriptor}, {mfName, mf}} {
		if err := tw.WriteHeader(hdr(m.name, int64(len(m.b)))); err != nil {
			return err
		}
		if _, err := tw.Write(m.b); err != nil {
			return err
		}
	}
	for i, p := range paths {
		if err := tw.WriteHeader(hdr(files[i].Href, files[i].Size)); err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, src)
		src.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Sync()
}
