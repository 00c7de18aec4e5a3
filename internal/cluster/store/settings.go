package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/govisor/govisor/api"
)

// settingsKey holds the cluster-wide settings (api.ClusterSettings).
const settingsKey = "/govisor/cluster/settings"

// Settings reads the cluster's settings (the zero value when none were
// set).
func (s *Store) Settings(ctx context.Context) (api.ClusterSettings, error) {
	var cs api.ClusterSettings
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, settingsKey)
	if err != nil {
		return cs, s.fail("read the cluster settings", err)
	}
	if len(resp.Kvs) > 0 {
		if err := json.Unmarshal(resp.Kvs[0].Value, &cs); err != nil {
			return cs, fmt.Errorf("store: decode the cluster settings: %w", err)
		}
	}
	return cs, nil
}

// PutSettings replaces the cluster's settings.
func (s *Store) PutSettings(ctx context.Context, cs api.ClusterSettings) error {
	b, err := json.Marshal(cs)
	if err != nil {
		return fmt.Errorf("store: encode the cluster settings: %w", err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.cli.Put(ctx, settingsKey, string(b)); err != nil {
		return s.fail("write the cluster settings", err)
	}
	return nil
}
