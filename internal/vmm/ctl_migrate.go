package vmm

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/govisor/govisor/internal/migration"
	"github.com/govisor/govisor/internal/vm"
	"github.com/govisor/govisor/internal/vmmapi"
)

// Migrate runs one outgoing migration under c.mig, which lets the API show
// its progress and cancel it from other goroutines meanwhile.
func (c *machineCtl) Migrate(req vmmapi.MigrateRequest) (vmmapi.MigrateResult, error) {
	m, err := c.live()
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
	if err != nil && c.bootsAgain && rebooted(m) {
		// The VMM boots the guest again at once (a reboot is not the
		// VM's end): say so, for the caller to migrate it again.
		err = fmt.Errorf("%s: %w", vmmapi.MigrateGuestRebooted, err)
	}
	c.mig.End(st, err)
	if err != nil {
		return vmmapi.MigrateResult{}, err
	}
	return migrateResult(st), nil
}

// live returns the running machine: after a guest's reboot, which stops
// its machine before the VMM builds the next one, that next one.
func (c *machineCtl) live() (*vm.Machine, error) {
	m, err := c.get()
	if err != nil || !c.bootsAgain || !rebooted(m) {
		return m, err
	}
	for deadline := time.Now().Add(startWait); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if next := c.current(); next != nil && next != m {
			return next, nil
		}
	}
	return nil, errStarting
}

// rebooted reports whether machine m has stopped because its guest
// rebooted.
func rebooted(m *vm.Machine) bool {
	select {
	case <-m.Done():
		return m.Wait().Reason == vm.ExitReset
	default:
		return false
	}
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
	opts := migration.Options{
		MaxDowntime: time.Duration(req.MaxDowntimeMS) * time.Millisecond, Bandwidth: req.Bandwidth,
		AutoConverge: req.AutoConverge, PostCopy: req.PostCopy, Progress: c.mig.Report,
	}
	if req.LeaseNonce != 0 && !req.MirrorDisks && c.leases != nil {
		// Shared storage: the destination opens these very disks.
		opts.BeforeGo = func() error { return c.leases.handOver(req.LeaseTo, req.LeaseNonce) }
	}
	st, err := migrate(ctx, conn, opts)
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

// writeMigrated writes vmmapi.MigratedFile in the working directory (the
// VM's folder) once the guest went to the destination, with the figures
// of the migration that sent it. The machine stops at the handover, a
// moment before the migration's own goroutine records its end: that is
// waited for, briefly.
func (c *machineCtl) writeMigrated() error {
	var p vmmapi.MigrateProgress
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if p = c.MigrateProgress(); p.State == string(migration.StateCompleted) || time.Now().After(deadline) {
			break
		}
	}
	b, err := json.Marshal(vmmapi.Migrated{To: p.To, Time: time.Now().UTC(), Result: p.Result})
	if err != nil {
		return fmt.Errorf("write %s: %w", vmmapi.MigratedFile, err)
	}
	tmp := vmmapi.MigratedFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", vmmapi.MigratedFile, err)
	}
	if err := os.Rename(tmp, vmmapi.MigratedFile); err != nil {
		return fmt.Errorf("write %s: %w", vmmapi.MigratedFile, err)
	}
	return nil
}
