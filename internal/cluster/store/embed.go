package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ports are the loopback ports of the embedded etcd member, kept in the state
// directory: the member's peer URL is part of its stored cluster membership,
// so a restarted agent reuses the same ports.
type ports struct {
	Client int `json:"client"`
	Peer   int `json:"peer"`
}

// startEmbedded starts a single-member etcd with its data in dir/etcd,
// listening on loopback only (over TLS with t), and returns it with its
// client URL.
func startEmbedded(dir string, timeout time.Duration, t *TLS) (*embed.Etcd, string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("store: state dir: %w", err)
	}
	if m, err := loadMemberMark(dir); err != nil {
		return nil, "", err
	} else if m != nil && dataExists(dir) {
		return nil, "", fmt.Errorf("store: %s holds the data of etcd cluster member %q: start the agent with that cluster's --etcd-initial-cluster and --etcd-endpoints, or use another --state-dir", filepath.Join(dir, "etcd"), m.Name)
	}
	p, err := loadPorts(filepath.Join(dir, "etcd-ports.json"))
	if err != nil {
		return nil, "", err
	}
	cfg := newConfig(dir, "govisor", t)
	curl := url.URL{Scheme: t.scheme(), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Client))}
	purl := url.URL{Scheme: t.scheme(), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Peer))}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{curl}, []url.URL{curl}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{purl}, []url.URL{purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("store: start embedded etcd in %s: %w", cfg.Dir, err)
	}
	if err := waitReady(e, timeout, fmt.Sprintf("embedded etcd in %s not ready after %v", cfg.Dir, timeout)); err != nil {
		return nil, "", err
	}
	return e, curl.String(), nil
}

// newConfig is the etcd configuration both modes share; with t, clients
// and peers talk TLS and need a certificate t's CA signed.
func newConfig(dir, name string, t *TLS) *embed.Config {
	cfg := embed.NewConfig()
	if t != nil {
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = t.info(), t.info()
	}
	cfg.Name = name
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.LogLevel = "error"
	// Quiet, but for what ends the process: a fatal error of the embedded
	// etcd exits the agent, and must not do so unexplained.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(zapcore.NewCore(
		zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.Lock(os.Stderr), zapcore.DPanicLevel)))
	cfg.EnableGRPCGateway = false
	// Keep an hour of history: event watchers need only recent revisions.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"
	cfg.ListenMetricsUrls = nil
	return cfg
}

// waitReady waits until e serves clients (for a cluster member: until the
// cluster has a quorum), and closes e if it fails or times out.
func waitReady(e *embed.Etcd, timeout time.Duration, late string) error {
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		closeUnready(e)
		return fmt.Errorf("store: embedded etcd: %w", err)
	case <-time.After(timeout):
		closeUnready(e)
		return errors.New("store: " + late)
	}
}

// closeUnready closes an etcd that never became ready: Close alone waits for
// its client servers, which only start once it is ready, so the server is
// stopped first.
func closeUnready(e *embed.Etcd) {
	e.Server.HardStop()
	e.Close()
}

// loadPorts reads the saved ports, or picks two free loopback ports and saves them.
func loadPorts(path string) (ports, error) {
	var p ports
	b, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(b, &p); err != nil || p.Client <= 0 || p.Peer <= 0 || p.Client > 65535 || p.Peer > 65535 {
			return p, fmt.Errorf("store: %s is corrupt; remove it to pick new ports", path)
		}
		return p, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return p, fmt.Errorf("store: %w", err)
	}
	two, err := freePorts(2)
	if err != nil {
		return p, err
	}
	p.Client, p.Peer = two[0], two[1]
	b, _ = json.Marshal(p)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return p, fmt.Errorf("store: save etcd ports: %w", err)
	}
	return p, nil
}

// freePorts asks the kernel for n unused loopback TCP ports, all different:
// each listener stays open until all are picked, as a port closed at once
// can be handed out again by the next bind (both etcd ports came out the
// same, and etcd failed with "address already in use").
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("store: pick a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
