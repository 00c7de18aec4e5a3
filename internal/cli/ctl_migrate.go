package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/migration"
	"github.com/govisor/govisor/internal/vm"
	"github.com/govisor/govisor/internal/vmmapi"
)

// Migrate runs one outgoing migration under c.mig, which lets the API show
// its progress and cancel it from other goroutines meanwhile.
func (c *machineCtl) Migrate(req vmmapi.MigrateRequest) (vmmapi.MigrateResult, error) {
	m, err := c.get()
	if err != nil {
		return vmmapi.MigrateResult{}, err
	}
	ctx, err := c.mig.Begin(context.Background())
	if err != nil {
		return vmmapi.MigrateResult{}, err
	}
	c.mu.Lock()
	c.migTo = req.To
	c.mu.Unlock()
	st, err := c.migrate(ctx, m, req)
	c.mig.End(st, err)
	if err != nil {
		return vmmapi.MigrateResult{}, err
	}
	return migrateResult(st), nil
}

func (c *machineCtl) migrate(ctx context.Context, m *vm.Machine, req vmmapi.MigrateRequest) (migration.Stats, error) {
	network, addr, err := MigrationAddr(req.To)
	if err != nil {
		return migration.Stats{}, fmt.Errorf("migrate: destination %w", err)
	}
	var tlsCfg *tls.Config
	if req.TLSCert != "" || req.TLSKey != "" || req.TLSCA != "" {
		if network == "unix" {
			return migration.Stats{}, errors.New("migrate: TLS secures a migration over TCP; a unix: socket never leaves this host")
		}
		if req.TLSCert == "" || req.TLSKey == "" || req.TLSCA == "" {
			return migration.Stats{}, errors.New("migrate: TLS needs all of a certificate, its key and a CA bundle (--tls-cert, --tls-key, --tls-ca)")
		}
		host, _, err := net.SplitHostPort(req.To)
		if err != nil {
			return migration.Stats{}, fmt.Errorf("migrate: destination %q: %w", req.To, err)
		}
		if tlsCfg, err = migration.ClientTLSConfig(req.TLSCert, req.TLSKey, req.TLSCA, host); err != nil {
			return migration.Stats{}, err
		}
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return migration.Stats{}, fmt.Errorf("migrate: %w (is a govisor run --incoming VMM listening there?)", err)
	}
	defer conn.Close()
	if tlsCfg != nil {
		tc := tls.Client(conn, tlsCfg)
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return migration.Stats{}, fmt.Errorf("migrate: TLS handshake with %s: %w (the destination's certificate must be signed by a CA in the --tls-ca bundle, and name the host given)", req.To, err)
		}
		conn = tc
	}
	migrate := m.MigrateTo
	if req.MirrorDisks {
		migrate = m.MigrateMirroringTo
	}
	st, err := migrate(ctx, conn, migration.Options{
		MaxDowntime: time.Duration(req.MaxDowntimeMS) * time.Millisecond, Bandwidth: req.Bandwidth,
		AutoConverge: req.AutoConverge, PostCopy: req.PostCopy, Progress: c.mig.Report,
	})
	if err != nil && tlsCfg != nil && strings.Contains(err.Error(), "tls: ") {
		err = fmt.Errorf("%w (the destination did not accept this VMM's TLS certificate: it must be signed by a CA in the destination's --tls-ca)", err)
	}
	return st, err
}

func migrateResult(st migration.Stats) vmmapi.MigrateResult {
	return vmmapi.MigrateResult{Rounds: st.Rounds, BytesSent: st.BytesSent, PagesSent: st.PagesSent, ZeroPages: st.ZeroPages,
		TotalMS: ms(st.Total), DowntimeMS: ms(st.Downtime), PostCopyPages: st.PostCopyPages, PostCopyRequested: st.PostCopyRequested}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// MigrateProgress reports the latest outgoing migration.
func (c *machineCtl) MigrateProgress() vmmapi.MigrateProgress {
	st := c.mig.Status()
	c.mu.Lock()
	to := c.migTo
	c.mu.Unlock()
	p := vmmapi.MigrateProgress{State: string(st.State)}
	if st.State == migration.StateIdle {
		return p
	}
	pr := st.Progress
	p.To, p.Round, p.BytesSent, p.PagesSent = to, pr.Round, pr.BytesSent, pr.PagesSent
	p.DirtyRate, p.RemainingPages, p.ExpectedDowntimeMS = pr.DirtyRate, pr.RemainingPages, ms(pr.ExpectedDowntime)
	p.Bandwidth, p.ThrottlePercent, p.Paused, p.PostCopy = pr.Bandwidth, pr.Throttle, pr.Paused, pr.PostCopy
	if st.Ended.IsZero() {
		p.ElapsedMS = ms(time.Since(st.Started))
	} else {
		p.ElapsedMS = ms(st.Ended.Sub(st.Started))
	}
	if st.Err != nil {
		p.Error = st.Err.Error()
	}
	if st.State == migration.StateCompleted {
		r := migrateResult(st.Stats)
		p.Result = &r
	}
	return p
}

// CancelMigrate cancels the running outgoing migration.
func (c *machineCtl) CancelMigrate() error { return c.mig.Cancel() }

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
	if network, path, err := MigrationAddr(dest); err != nil {
		return req, fmt.Errorf("migrate: destination %w", err)
	} else if network == "unix" {
		// The VMM dials: give it a path that does not depend on this
		// process's working directory.
		abs, err := filepath.Abs(path)
		if err != nil {
			return req, err
		}
		req.To = unixPrefix + abs
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
func ctlMigrate(c *vmmapi.Client, req vmmapi.MigrateRequest, out, progress io.Writer) error {
	type result struct {
		res vmmapi.MigrateResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.Migrate(req)
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
					if p, err := c.MigrateProgress(); err == nil && p.State == vmmapi.MigrateCancelled {
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
				if err := c.CancelMigrate(); err != nil {
					fmt.Fprintf(progress, "migrate: cancel: %v\n", err)
				}
				cancelled = true
			}
		case <-tick.C:
			if p, err := c.MigrateProgress(); err == nil && progress != nil && p.State == vmmapi.MigrateRunning {
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
