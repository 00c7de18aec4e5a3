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
	"time"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/vmm"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
	"github.com/govisor/govisor/internal/vmmapi"
)

// ParseBandwidth parses a transfer rate in bytes per second with an
// optional K, M or G suffix (powers of 1024) and an optional "/s":
// 100M is 100 MiB/s. 0 means unlimited.
func ParseBandwidth(s string) (int64, error) {
	n, err := diskimage.ParseSize(strings.TrimSuffix(strings.TrimSpace(s), "/s"))
	if err != nil {
		return 0, fmt.Errorf("--bandwidth %q: give bytes per second, e.g. 100M (MiB/s), 500K or 1G", s)
	}
	return n, nil
}

// migrateFlags are the options of `govisor ctl migrate`.
type migrateFlags struct {
	maxDowntimeMS   int
	maxDowntime     time.Duration
	bandwidth       string
	autoConverge    bool
	mirrorDisks     bool
	postCopy        bool
	tlsCert, tlsKey string
	tlsCA           string
	quiet           bool
}

// request builds the API request for a migration to dest.
func (f *migrateFlags) request(dest string) (vmmapi.MigrateRequest, error) {
	req := vmmapi.MigrateRequest{To: dest, MaxDowntimeMS: f.maxDowntimeMS, AutoConverge: f.autoConverge, MirrorDisks: f.mirrorDisks, PostCopy: f.postCopy}
	if f.postCopy && f.mirrorDisks {
		return req, errors.New("--post-copy moves memory only: it cannot be combined with --mirror-disks (put the disks on shared storage)")
	}
	if network, path, err := vmm.MigrationAddr(dest); err != nil {
		return req, fmt.Errorf("migrate: destination %w", err)
	} else if network == "unix" {
		// The VMM dials: give it a path that does not depend on this
		// process's working directory.
		abs, err := filepath.Abs(path)
		if err != nil {
			return req, err
		}
		req.To = vmmconfig.UnixPrefix + abs
	}
	if f.maxDowntime != 0 {
		if f.maxDowntime < time.Millisecond {
			return req, fmt.Errorf("--max-downtime %v: give at least 1ms", f.maxDowntime)
		}
		req.MaxDowntimeMS = int(f.maxDowntime / time.Millisecond)
	}
	if f.bandwidth != "" {
		bw, err := ParseBandwidth(f.bandwidth)
		if err != nil {
			return req, err
		}
		req.Bandwidth = bw
	}
	// The VMM opens the files: give it paths that do not depend on this
	// process's working directory.
	for _, p := range []struct {
		in  string
		out *string
	}{{f.tlsCert, &req.TLSCert}, {f.tlsKey, &req.TLSKey}, {f.tlsCA, &req.TLSCA}} {
		if p.in == "" {
			continue
		}
		abs, err := filepath.Abs(p.in)
		if err != nil {
			return req, err
		}
		*p.out = abs
	}
	if (req.TLSCert == "") != (req.TLSKey == "") || (req.TLSCert == "") != (req.TLSCA == "") {
		return req, errors.New("--tls-cert, --tls-key and --tls-ca go together: mutual TLS needs all three")
	}
	return req, nil
}

// progressInterval is how often `govisor ctl migrate` prints progress.
const progressInterval = 200 * time.Millisecond

// ctlMigrate runs a migration through the API, printing progress lines to
// progress while it runs; SIGINT or SIGTERM cancels it (the VM keeps
// running on the source).
func ctlMigrate(ctx context.Context, c *vmmapi.Client, req vmmapi.MigrateRequest, out, progress io.Writer) error {
	type result struct {
		res vmmapi.MigrateResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.Migrate(ctx, req)
		done <- result{res, err}
	}()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	cancelled := false
	for {
		select {
		case r := <-done:
			if r.err != nil {
				if cancelled {
					if p, err := c.MigrateProgress(ctx); err == nil && p.State == vmmapi.MigrateCancelled {
						return &ExitError{Code: 130, Err: errors.New("migration cancelled; the VM keeps running here")}
					}
					return &ExitError{Code: 130, Err: fmt.Errorf("migration cancelled: %w", r.err)}
				}
				return r.err
			}
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(r.res)
		case <-sigs:
			if !cancelled {
				fmt.Fprintln(progress, "migrate: cancelling; the VM keeps running on the source")
				if err := c.CancelMigrate(ctx); err != nil {
					fmt.Fprintf(progress, "migrate: cancel: %v\n", err)
				}
				cancelled = true
			}
		case <-tick.C:
			if p, err := c.MigrateProgress(ctx); err == nil && progress != nil && p.State == vmmapi.MigrateRunning {
				fmt.Fprintln(progress, progressLine(p))
			}
		}
	}
}

// progressLine formats a running migration's progress for people.
func progressLine(p vmmapi.MigrateProgress) string {
	phase := fmt.Sprintf("round %d", p.Round)
	if p.Round == 0 {
		phase = "round 0 (full copy)"
	}
	if p.Paused {
		phase = "paused, sending the rest"
	}
	if p.PostCopy {
		phase = "post-copy, the destination runs the VM"
	}
	return fmt.Sprintf("migrate: %s, sent %s at %s/s, dirty rate %.0f pages/s, remaining %d pages, expected downtime %.0f ms",
		phase, humanBytes(float64(p.BytesSent)), humanBytes(p.Bandwidth), p.DirtyRate, p.RemainingPages, p.ExpectedDowntimeMS)
}

// humanBytes formats a byte count with a binary unit.
func humanBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", n, units[i])
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}
