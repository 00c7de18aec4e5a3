package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// hostConfPrefix holds what users and the leader decide about a host, which
// outlives its agent's lease: /govisor/hostconf/<host> (HostConfig).
const hostConfPrefix = "/govisor/hostconf/"

// HostConfig is the cluster's settings and decisions for one host.
type HostConfig struct {
	// Maintenance asks for the host to be emptied of running VMs and to
	// take no new ones, since MaintenanceSince.
	Maintenance      bool      `json:"maintenance,omitempty"`
	MaintenanceSince time.Time `json:"maintenanceSince,omitzero"`
	// Stuck lists the VMs the evacuation cannot move, each "VM: reason",
	// as the leader last planned it.
	Stuck []string `json:"stuck,omitempty"`
	// CPU is the host's processor as it last joined: kept after its lease
	// ends, so that a host that is down still bounds the cluster's CPU
	// baseline (VMs started meanwhile can go back to it).
	CPU *HostCPU `json:"cpu,omitempty"`
}

// HostCPU is a host's processor as /proc/cpuinfo reports it.
type HostCPU struct {
	Vendor   string   `json:"vendor"`
	Model    string   `json:"model,omitempty"`
	Features []string `json:"features"`
}

// SetHostCPU records host's processor (as it joins).
func (s *Store) SetHostCPU(ctx context.Context, host string, cpu HostCPU) error {
	return s.updateHostConfig(ctx, host, func(c *HostConfig) { c.CPU = &cpu })
}

// SetMaintenance asks for host to enter (on) or leave maintenance.
func (s *Store) SetMaintenance(ctx context.Context, host string, on bool) error {
	return s.updateHostConfig(ctx, host, func(c *HostConfig) {
		if c.Maintenance != on {
			c.Maintenance, c.MaintenanceSince, c.Stuck = on, time.Time{}, nil
			if on {
				c.MaintenanceSince = time.Now().UTC()
			}
		}
	})
}

// SetStuck records the VMs an evacuation of host cannot move.
func (s *Store) SetStuck(ctx context.Context, host string, stuck []string) error {
	return s.updateHostConfig(ctx, host, func(c *HostConfig) { c.Stuck = stuck })
}

// updateHostConfig applies fn to host's config, retrying on a concurrent
// change.
func (s *Store) updateHostConfig(ctx context.Context, host string, fn func(*HostConfig)) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	k := hostConfPrefix + host
	for range 5 {
		resp, err := s.cli.Get(ctx, k)
		if err != nil {
			return s.fail("read the settings of host "+host, err)
		}
		var c HostConfig
		var rev int64
		if len(resp.Kvs) > 0 {
			rev = resp.Kvs[0].ModRevision
			if err := json.Unmarshal(resp.Kvs[0].Value, &c); err != nil {
				return fmt.Errorf("store: decode settings of host %s: %w", host, err)
			}
		}
		fn(&c)
		b, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("store: encode settings of host %s: %w", host, err)
		}
		tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(clientv3.OpPut(k, string(b))).Commit()
		if err != nil {
			return s.fail("write the settings of host "+host, err)
		}
		if tr.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("%w: settings of host %s", ErrConflict, host)
}

// HostConfigs reads every host's settings, by host name.
func (s *Store) HostConfigs(ctx context.Context) (map[string]HostConfig, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, hostConfPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, s.fail("read the hosts' settings", err)
	}
	out := map[string]HostConfig{}
	for _, kv := range resp.Kvs {
		var c HostConfig
		if err := json.Unmarshal(kv.Value, &c); err != nil {
			return nil, fmt.Errorf("store: decode %s: %w", kv.Key, err)
		}
		out[strings.TrimPrefix(string(kv.Key), hostConfPrefix)] = c
	}
	return out, nil
}
