package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// DefaultInterval is how often the sampler measures unless configured.
const DefaultInterval = 10 * time.Second

// VMInfo is what the agent tells the sampler about one of its VMs.
type VMInfo struct {
	Name        string
	State       string
	VCPUs       int
	MemoryBytes uint64
	PID         int // the VMM process; 0 when none runs
}

// IO is a VM's cumulative disk and network traffic, from its VMM.
type IO struct {
	DiskReadBytes, DiskWriteBytes uint64
	NetRxBytes, NetTxBytes        uint64
}

// Config configures a Sampler.
type Config struct {
	Store    *Store        // where samples go (required)
	Host     string        // this host's name (required)
	Interval time.Duration // between samples; 0: DefaultInterval
	// ListVMs returns this host's VMs (required).
	ListVMs func(ctx context.Context) ([]VMInfo, error)
	// ReadIO returns a running VM's traffic counters; nil, or an error,
	// leaves the sample without them (HasIO false).
	ReadIO func(ctx context.Context, vm VMInfo) (IO, error)
	// OnSample, if set, gets every round of samples as it is taken (the
	// agent publishes the loads the cluster's balancer reads).
	OnSample func([]Sample)
	Proc     ProcFS           // zero: /proc
	Now      func() time.Time // zero: time.Now
	Logger   *slog.Logger     // zero: discard
}

// Sampler measures the host and its VMs periodically into a Store.
type Sampler struct {
	cfg       Config
	lastPrune time.Time
}

// ioTimeout bounds one VMM's answer to GET /stats: a stuck VMM must not
// stall the samples of the others.
const ioTimeout = time.Second

// NewSampler checks cfg and fills in its defaults.
func NewSampler(cfg Config) (*Sampler, error) {
	if cfg.Store == nil || cfg.ListVMs == nil || cfg.Host == "" {
		return nil, errors.New("usage: a sampler needs a store, a host name and ListVMs")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Proc.Root == "" {
		cfg.Proc.Root = "/proc"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sampler{cfg: cfg}, nil
}

// Measure takes one sample of the host and of every VM, without storing them.
func (s *Sampler) Measure(ctx context.Context) ([]Sample, error) {
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	var out []Sample
	hf, err := s.cfg.Proc.Host()
	if err != nil {
		return nil, err
	}
	out = append(out, Sample{
		Time: now, Host: s.cfg.Host, State: "up", VCPUs: hf.CPUs, MemoryBytes: hf.MemTotal,
		CPUSeconds: hf.BusySeconds, RSSBytes: hf.MemUsed,
	})
	vms, err := s.cfg.ListVMs(ctx)
	if err != nil {
		return out, fmt.Errorf("usage: list VMs: %w", err)
	}
	for _, v := range vms {
		smp := Sample{Time: now, Host: s.cfg.Host, VM: v.Name, State: v.State, VCPUs: v.VCPUs, MemoryBytes: v.MemoryBytes}
		if v.PID > 0 {
			// A VMM that exited since ListVMs simply has no process figures.
			if cpu, rss, err := s.cfg.Proc.Process(v.PID); err == nil {
				smp.CPUSeconds, smp.RSSBytes = cpu, rss
			}
			if s.cfg.ReadIO != nil {
				ictx, cancel := context.WithTimeout(ctx, ioTimeout)
				io, err := s.cfg.ReadIO(ictx, v)
				cancel()
				if err == nil {
					smp.HasIO = true
					smp.DiskReadBytes, smp.DiskWriteBytes = io.DiskReadBytes, io.DiskWriteBytes
					smp.NetRxBytes, smp.NetTxBytes = io.NetRxBytes, io.NetTxBytes
				}
			}
		}
		out = append(out, smp)
	}
	return out, nil
}

// SampleOnce measures and stores one round of samples, and prunes old
// files at most once an hour.
func (s *Sampler) SampleOnce(ctx context.Context) error {
	smps, err := s.Measure(ctx)
	if len(smps) > 0 && s.cfg.OnSample != nil {
		s.cfg.OnSample(smps)
	}
	if len(smps) > 0 {
		if aerr := s.cfg.Store.Append(smps...); aerr != nil {
			return errors.Join(err, aerr)
		}
	}
	if now := s.cfg.Now(); now.Sub(s.lastPrune) >= time.Hour {
		s.lastPrune = now
		if perr := s.cfg.Store.Prune(now); perr != nil {
			err = errors.Join(err, perr)
		}
	}
	return err
}

// Run samples every Interval until ctx ends, then closes the store.
func (s *Sampler) Run(ctx context.Context) {
	defer s.cfg.Store.Close()
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if err := s.SampleOnce(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("usage sample", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
