package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/govisor/govisor/internal/diskimage"
	_ "github.com/govisor/govisor/internal/diskimage/all" // every format driver
	"github.com/govisor/govisor/internal/diskimage/convert"
)

// NewImageCmd builds `govisor image`: info, create, convert, check and
// resize of disk images in any supported format.
func NewImageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Inspect, create, convert, check and resize disk images (" + strings.Join(diskimage.Formats(), ", ") + ")",
	}
	cmd.AddCommand(newImageInfoCmd(), newImageCreateCmd(), newImageConvertCmd(), newImageCheckCmd(), newImageResizeCmd())
	return cmd
}

// needFile gives a clear error for a missing input file.
func needFile(path string) error {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: no such file", path)
		}
		return err
	}
	return nil
}

// checkFormat rejects an unknown -f/-O value before any file is touched.
func checkFormat(name string) error {
	if name == "" {
		return nil
	}
	_, err := diskimage.Lookup(name)
	return err
}

// parseOptions splits "-o k=v,k2,k3=v3" into a map; a key without a value
// maps to "".
func parseOptions(list []string) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range list {
		for _, kv := range strings.Split(s, ",") {
			kv = strings.TrimSpace(kv)
			if kv == "" {
				continue
			}
			k, v, _ := strings.Cut(kv, "=")
			if k == "" {
				return nil, fmt.Errorf("invalid option %q: use key=value", kv)
			}
			out[k] = v
		}
	}
	return out, nil
}

// humanSize renders n bytes as qemu-img does ("20 GiB").
func humanSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	// Two decimals at most, trailing zeros dropped: "40 KiB", "1.5 GiB".
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", f), "0"), ".") + " " + units[i]
}

func newImageInfoCmd() *cobra.Command {
	var asJSON bool
	var format string
	cmd := &cobra.Command{
		Use:   "info FILE",
		Short: "Show an image's format, sizes, backing chain and flags",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if err := needFile(path); err != nil {
				return err
			}
			if err := checkFormat(format); err != nil {
				return err
			}
			info, err := diskimage.InfoOf(path, format)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				out := struct {
					Filename string `json:"filename"`
					diskimage.Info
				}{path, info}
				enc := json.NewEncoder(w)
				enc.SetIndent("", "    ")
				return enc.Encode(out)
			}
			fmt.Fprintf(w, "image: %s\nfile format: %s\n", path, info.Format)
			if info.Subformat != "" {
				fmt.Fprintf(w, "subformat: %s\n", info.Subformat)
			}
			fmt.Fprintf(w, "virtual size: %s (%d bytes)\ndisk size: %s\n", humanSize(info.VirtualSize), info.VirtualSize, humanSize(info.ActualSize))
			if info.ClusterSize != 0 {
				fmt.Fprintf(w, "cluster_size: %d\n", info.ClusterSize)
			}
			if info.BackingFile != "" {
				fmt.Fprintf(w, "backing file: %s\n", info.BackingFile)
			}
			for i, b := range info.BackingChain {
				fmt.Fprintf(w, "backing chain[%d]: %s\n", i, b)
			}
			if info.Dirty {
				fmt.Fprintln(w, "dirty: true (refcounts may be stale; opening it for writing or check --repair fixes them)")
			}
			if info.Corrupt {
				fmt.Fprintln(w, "corrupt: true (run check --repair)")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVarP(&format, "format", "f", "", "image format (default: probe)")
	return cmd
}

func newImageCreateCmd() *cobra.Command {
	var format, backing, backingFmt string
	var opts []string
	cmd := &cobra.Command{
		Use:   "create -f FMT FILE [SIZE]",
		Short: "Create an empty image (SIZE may be omitted with --backing)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			o, err := parseOptions(opts)
			if err != nil {
				return err
			}
			path := args[0]
			var size int64 = -1
			if len(args) == 2 {
				if size, err = diskimage.ParseSize(args[1]); err != nil {
					return err
				}
			}
			if backing != "" {
				bp := diskimage.ResolveBacking(path, backing)
				if err := needFile(bp); err != nil {
					return fmt.Errorf("backing file: %w", err)
				}
				if size < 0 {
					b, err := diskimage.Open(bp, diskimage.OpenOptions{Format: backingFmt, ReadOnly: true})
					if err != nil {
						return err
					}
					size = b.VirtualSize()
					b.Close()
				}
			}
			if size < 0 {
				return errors.New("create: SIZE is required without --backing")
			}
			img, err := diskimage.Create(path, format, size, diskimage.CreateOptions{BackingFile: backing, BackingFormat: backingFmt, Options: o})
			if err != nil {
				return err
			}
			if err := img.Close(); err != nil {
				os.Remove(path)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Formatting '%s', fmt=%s size=%d\n", path, format, size)
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "raw", "image format")
	cmd.Flags().StringVarP(&backing, "backing", "b", "", "backing file (relative to the new image's directory)")
	cmd.Flags().StringVarP(&backingFmt, "backing-format", "F", "", "backing file format (default: probe)")
	cmd.Flags().StringArrayVarP(&opts, "options", "o", nil, "format options k=v,... (e.g. compat=0.10,cluster_size=64K)")
	return cmd
}

func newImageConvertCmd() *cobra.Command {
	var inFmt, outFmt string
	var opts []string
	var workers int
	var progress, compress bool
	cmd := &cobra.Command{
		Use:   "convert [-f IN] -O FMT [-o subformat=...,compress] [-W N] [-p] IN OUT",
		Short: "Convert an image to another format (sparse, parallel, same bytes)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, out := args[0], args[1]
			if err := needFile(in); err != nil {
				return err
			}
			if err := checkFormat(inFmt); err != nil {
				return err
			}
			if err := checkFormat(outFmt); err != nil {
				return err
			}
			o, err := parseOptions(opts)
			if err != nil {
				return err
			}
			if _, ok := o["compress"]; ok {
				compress = true
				delete(o, "compress")
			}
			if a, b := absPath(in), absPath(out); a == b {
				return errors.New("convert: input and output are the same file")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var bar *progressBar
			if progress || isTerminal(cmd.ErrOrStderr()) {
				bar = &progressBar{w: cmd.ErrOrStderr()}
			}
			return convertFile(ctx, in, out, inFmt, outFmt, o, compress, workers, bar)
		},
	}
	cmd.Flags().StringVarP(&inFmt, "format", "f", "", "input format (default: probe)")
	cmd.Flags().StringVarP(&outFmt, "output-format", "O", "raw", "output format")
	cmd.Flags().StringArrayVarP(&opts, "options", "o", nil, "output options k=v,... plus compress")
	cmd.Flags().BoolVarP(&compress, "compress", "c", false, "compress the output (qcow2)")
	cmd.Flags().IntVarP(&workers, "workers", "W", 0, "parallel workers (default: CPUs)")
	cmd.Flags().BoolVarP(&progress, "progress", "p", false, "show progress on stderr")
	return cmd
}

// convertFile converts in to a new out; on any failure out is removed.
func convertFile(ctx context.Context, in, out, inFmt, outFmt string, o map[string]string, compress bool, workers int, bar *progressBar) (err error) {
	src, err := diskimage.Open(in, diskimage.OpenOptions{Format: inFmt, ReadOnly: true})
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := diskimage.Create(out, outFmt, src.VirtualSize(), diskimage.CreateOptions{Options: o})
	if err != nil {
		return fmt.Errorf("convert: create %s: %w", out, err)
	}
	defer func() {
		if cerr := dst.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("convert: close %s: %w", out, cerr)
		}
		if err != nil {
			os.Remove(out)
		}
	}()
	copts := convert.Options{Workers: workers, Compress: compress}
	if bar != nil {
		copts.Progress = bar.update
		defer bar.finish()
	}
	if err := convert.Convert(ctx, src, dst, copts); err != nil {
		return fmt.Errorf("convert %s to %s: %w", in, out, err)
	}
	return nil
}

func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	if r, err := filepath.EvalSymlinks(a); err == nil {
		return r
	}
	return a
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newImageCheckCmd() *cobra.Command {
	var repair, asJSON bool
	var format string
	cmd := &cobra.Command{
		Use:   "check FILE [--repair] [--json]",
		Short: "Check image metadata (exit 2: corruptions, 3: leaks only)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if err := needFile(path); err != nil {
				return err
			}
			if err := checkFormat(format); err != nil {
				return err
			}
			img, err := diskimage.Open(path, diskimage.OpenOptions{Format: format, ReadOnly: !repair, Repair: repair, NoBacking: true})
			if err != nil {
				return err
			}
			defer img.Close()
			c, ok := img.(diskimage.Checker)
			if !ok {
				return fmt.Errorf("check: %s images have no metadata to check", img.Format())
			}
			res, err := c.Check(repair)
			if err != nil {
				return fmt.Errorf("check %s: %w", path, err)
			}
			if err := img.Close(); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				out := struct {
					Filename string `json:"filename"`
					Format   string `json:"format"`
					diskimage.CheckResult
				}{path, img.Format(), res}
				enc := json.NewEncoder(w)
				enc.SetIndent("", "    ")
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else {
				printCheck(w, res)
			}
			switch {
			case res.Corruptions > 0:
				return &ExitError{Code: 2}
			case res.Leaks > 0:
				return &ExitError{Code: 3}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "fix leaks and refcount errors")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVarP(&format, "format", "f", "", "image format (default: probe)")
	return cmd
}

func printCheck(w io.Writer, res diskimage.CheckResult) {
	for _, m := range res.Messages {
		fmt.Fprintln(w, m)
	}
	if res.LeaksFixed+res.CorruptionsFixed > 0 {
		fmt.Fprintf(w, "The following inconsistencies were found and repaired:\n\n    %d leaked clusters\n    %d corruptions\n\n",
			res.LeaksFixed, res.CorruptionsFixed)
	}
	if res.Corruptions == 0 && res.Leaks == 0 {
		fmt.Fprintln(w, "No errors were found on the image.")
	}
	if res.Corruptions > 0 {
		fmt.Fprintf(w, "\n%d errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n", res.Corruptions)
	}
	if res.Leaks > 0 {
		fmt.Fprintf(w, "\n%d leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n", res.Leaks)
	}
	if res.TotalClusters > 0 {
		fmt.Fprintf(w, "%d/%d = %.2f%% allocated\n", res.AllocatedClusters, res.TotalClusters,
			100*float64(res.AllocatedClusters)/float64(res.TotalClusters))
	}
	if res.ImageEndOffset > 0 {
		fmt.Fprintf(w, "Image end offset: %d\n", res.ImageEndOffset)
	}
}

func newImageResizeCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "resize FILE [+]SIZE",
		Short: "Change an image's virtual size (qcow2: grow only)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if err := needFile(path); err != nil {
				return err
			}
			if err := checkFormat(format); err != nil {
				return err
			}
			rel := strings.HasPrefix(args[1], "+")
			size, err := diskimage.ParseSize(strings.TrimPrefix(args[1], "+"))
			if err != nil {
				return err
			}
			img, err := diskimage.Open(path, diskimage.OpenOptions{Format: format})
			if err != nil {
				return err
			}
			defer img.Close()
			r, ok := img.(diskimage.Resizer)
			if !ok {
				return fmt.Errorf("resize: %s images cannot be resized", img.Format())
			}
			if rel {
				size += img.VirtualSize()
			}
			if err := r.Resize(size); err != nil {
				return fmt.Errorf("resize %s: %w", path, err)
			}
			if err := img.Close(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Image resized.")
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "image format (default: probe)")
	return cmd
}
