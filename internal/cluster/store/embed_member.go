package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// memberMark is kept in the state directory once the member has joined its
// cluster: etcd keeps a member's identity in its data, so a restart must use
// the same name and peer URL, and the single-member mode must not take the
// data over.
type memberMark struct {
	Name    string `json:"name"`
	PeerURL string `json:"peerURL"`
}

const memberMarkFile = "etcd-member.json"

// startMember starts m (checked by Member.Check) as one member of a
// multi-member etcd with its data in dir/etcd and waits until the cluster
// has a quorum.
func startMember(dir string, m Member, timeout time.Duration, t *TLS) (*embed.Etcd, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: state dir: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd-ports.json")); err == nil && dataExists(dir) {
		return nil, fmt.Errorf("store: %s holds the data of a single-member embedded etcd (the default mode); a cluster member needs a fresh one: move it and %s away (the VMs defined there are not carried over), or use another --state-dir",
			filepath.Join(dir, "etcd"), filepath.Join(dir, "etcd-ports.json"))
	}
	mark, err := loadMemberMark(dir)
	if err != nil {
		return nil, err
	}
	if mark != nil && dataExists(dir) {
		if mark.Name != m.Name {
			return nil, cfgErr(flagName, "the etcd data in %s is member %q's: use --%s %s, or another --state-dir", dir, mark.Name, flagName, mark.Name)
		}
		if mark.PeerURL != m.PeerURL {
			return nil, cfgErr(flagPeer, "member %q joined its cluster as %s, which etcd keeps in its data: use that URL in --%s and --%s", m.Name, mark.PeerURL, flagInitial, flagPeer)
		}
	}
	peers, err := parseInitialCluster(m.InitialCluster)
	if err != nil {
		return nil, err
	}
	purl, err := url.Parse(m.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("store: peer URL: %w", err)
	}
	curl, err := url.Parse(m.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("store: client URL: %w", err)
	}
	cfg := newConfig(dir, m.Name, t)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*curl}, []url.URL{*curl}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*purl}, []url.URL{*purl}
	cfg.InitialCluster = m.InitialCluster
	cfg.InitialClusterToken = "govisor"
	cfg.ClusterState = embed.ClusterStateFlagNew
	if m.Join {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	if m.ElectionTimeout > 0 {
		cfg.ElectionMs = uint(m.ElectionTimeout.Milliseconds())
		cfg.TickMs = cfg.ElectionMs / 10
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("store: start etcd member %s in %s: %w", m.Name, cfg.Dir, err)
	}
	var others []string
	for _, p := range peers {
		if p.name != m.Name {
			others = append(others, p.name+" at "+p.url.String())
		}
	}
	late := fmt.Sprintf("etcd member %s has no quorum (%d of %d members) after %v: start the agents of the other members (%s) and check that this host reaches their peer URLs and they reach %s",
		m.Name, len(peers)/2+1, len(peers), timeout, strings.Join(others, ", "), m.PeerURL)
	if err := waitReady(e, timeout, late); err != nil {
		return nil, err
	}
	if mark == nil || *mark != (memberMark{m.Name, m.PeerURL}) {
		b, _ := json.Marshal(memberMark{m.Name, m.PeerURL})
		if err := os.WriteFile(filepath.Join(dir, memberMarkFile), b, 0o600); err != nil {
			e.Close()
			return nil, fmt.Errorf("store: save etcd member: %w", err)
		}
	}
	return e, nil
}

// loadMemberMark reads dir's member mark, nil if there is none.
func loadMemberMark(dir string) (*memberMark, error) {
	path := filepath.Join(dir, memberMarkFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	var m memberMark
	if err := json.Unmarshal(b, &m); err != nil || m.Name == "" {
		return nil, fmt.Errorf("store: %s is corrupt; remove it if %s is not a cluster member's data", path, filepath.Join(dir, "etcd"))
	}
	return &m, nil
}

// dataExists reports whether dir/etcd holds etcd data.
func dataExists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "etcd", "member"))
	return err == nil
}
