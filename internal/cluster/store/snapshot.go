package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/govisor/govisor/api"
)

// Snapshot is the whole cluster as the leader's controllers read it, all
// at one etcd revision: live hosts (their records), their settings and
// published loads, the pools, every VM and the cluster settings.
type Snapshot struct {
	Revision int64
	Hosts    []api.Host
	Confs    map[string]HostConfig
	Loads    map[string]api.HostLoad
	Pools    []api.Pool
	VMs      []Record
	Settings api.ClusterSettings
}

// Snapshot reads the cluster in one transaction, so that no host, VM or
// setting is seen from before a change and another from after it.
func (s *Store) Snapshot(ctx context.Context) (Snapshot, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	prefixes := []string{hostPrefix, hostConfPrefix, loadPrefix, poolPrefix, vmPrefix}
	ops := []clientv3.Op{}
	for _, p := range prefixes {
		ops = append(ops, clientv3.OpGet(p, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)))
	}
	ops = append(ops, clientv3.OpGet(settingsKey))
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return Snapshot{}, s.fail("read the cluster", err)
	}
	snap := Snapshot{Revision: resp.Header.Revision, Confs: map[string]HostConfig{}, Loads: map[string]api.HostLoad{}}
	kvs := func(i int) []*mvccKV { return resp.Responses[i].GetResponseRange().Kvs }
	decode := func(kv *mvccKV, v any) error {
		if err := json.Unmarshal(kv.Value, v); err != nil {
			return fmt.Errorf("store: decode %s: %w", kv.Key, err)
		}
		return nil
	}
	for _, kv := range kvs(0) {
		var h api.Host
		if err := decode(kv, &h); err != nil {
			return Snapshot{}, err
		}
		snap.Hosts = append(snap.Hosts, h)
	}
	for _, kv := range kvs(1) {
		var c HostConfig
		if err := decode(kv, &c); err != nil {
			return Snapshot{}, err
		}
		snap.Confs[strings.TrimPrefix(string(kv.Key), hostConfPrefix)] = c
	}
	for _, kv := range kvs(2) {
		var l api.HostLoad
		if err := decode(kv, &l); err != nil {
			return Snapshot{}, err
		}
		snap.Loads[strings.TrimPrefix(string(kv.Key), loadPrefix)] = l
	}
	for _, kv := range kvs(3) {
		var p api.Pool
		if err := decode(kv, &p); err != nil {
			return Snapshot{}, err
		}
		snap.Pools = append(snap.Pools, p)
	}
	if snap.VMs, err = decodeVMs(kvs(4)); err != nil {
		return Snapshot{}, err
	}
	if s := kvs(5); len(s) > 0 {
		if err := decode(s[0], &snap.Settings); err != nil {
			return Snapshot{}, err
		}
	}
	return snap, nil
}

// InMaintenance says whether host is asked to be in maintenance.
func (s Snapshot) InMaintenance(host string) bool { return s.Confs[host].Maintenance }
