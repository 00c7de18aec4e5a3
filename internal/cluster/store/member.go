package store

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Member makes the agent's embedded etcd one member of a multi-member etcd
// cluster (every member carries the whole store, as with k3s's embedded
// etcd) instead of a single-member etcd on loopback. The member listens on
// exactly PeerURL and ClientURL, which it also advertises (no extra loopback
// listener), and the store's client talks to every member (Config.Endpoints).
//
// Check validates a Member; its errors are *ConfigError values naming the
// `govisor serve` flag that sets the bad value.
type Member struct {
	// Name is this member's name in InitialCluster.
	Name string
	// PeerURL is http://IP:PORT this member listens on for the other members
	// and advertises to them (default: its URL in InitialCluster).
	PeerURL string
	// ClientURL is http://IP:PORT this member serves etcd clients on
	// (default: the one entry of Config.Endpoints with PeerURL's IP).
	ClientURL string
	// InitialCluster is every member's peer URL, NAME=http://IP:PORT,...
	// etcd uses it only to bootstrap: a member restarted with existing data
	// ignores it.
	InitialCluster string
	// Join starts the member in a running cluster that added it as a
	// learner (Store.AddMember gave InitialCluster), and has it promoted
	// to a voting member once it caught up.
	Join bool
	// ElectionTimeout is how long members go without the leader's
	// heartbeat before electing another (0: etcd's default, 1 s), with a
	// heartbeat every tenth of it. It bounds HA's detection when the host
	// that dies leads etcd: the next leader extends every lease by it
	// (etcd's lessor.Promote), after up to twice it to be elected. Give
	// every member the same; slow (emulated) hosts need more.
	ElectionTimeout time.Duration
}

// ConfigError is an invalid member mode setting.
type ConfigError struct {
	Flag string // the `govisor serve` flag, without dashes
	Msg  string // what is wrong and how to fix it
}

// Error reads "--FLAG: MSG".
func (e *ConfigError) Error() string { return "--" + e.Flag + ": " + e.Msg }

func cfgErr(flag, format string, args ...any) error {
	return &ConfigError{Flag: flag, Msg: fmt.Sprintf(format, args...)}
}

// Flag names in ConfigError.
const (
	flagName      = "etcd-name"
	flagPeer      = "etcd-peer-url"
	flagClient    = "etcd-client-url"
	flagInitial   = "etcd-initial-cluster"
	flagEndpoints = "etcd-endpoints"
	flagElection  = "etcd-election-timeout"
)

// Bounds of ElectionTimeout: a heartbeat (a tenth) of at least 10 ms, and
// etcd's own limit of 50 s.
const (
	minElectionTimeout = 100 * time.Millisecond
	maxElectionTimeout = 50 * time.Second
)

// peer is one NAME=URL entry of an initial cluster.
type peer struct {
	name string
	url  url.URL
}

// Check validates m against endpoints (every member's client URL) and
// returns it with PeerURL and ClientURL filled in and normalized.
func (m Member) Check(endpoints []string) (Member, error) {
	if m.ElectionTimeout != 0 && (m.ElectionTimeout < minElectionTimeout || m.ElectionTimeout > maxElectionTimeout) {
		return m, cfgErr(flagElection, "%v is out of range: give %v to %v (etcd's default is 1s; slow hosts 2s)", m.ElectionTimeout, minElectionTimeout, maxElectionTimeout)
	}
	peers, err := parseInitialCluster(m.InitialCluster)
	if err != nil {
		return m, err
	}
	names := make([]string, len(peers))
	self := -1
	for i, p := range peers {
		names[i] = p.name
		if p.name == m.Name {
			self = i
		}
	}
	if m.Name == "" {
		return m, cfgErr(flagName, "empty: give this host's member name in --%s (%s)", flagInitial, strings.Join(names, ", "))
	}
	if self < 0 {
		return m, cfgErr(flagName, "%q is not a member in --%s (%s): use one of those names, or add %s=http://IP:2380 to --%s on every member",
			m.Name, flagInitial, strings.Join(names, ", "), m.Name, flagInitial)
	}
	own := peers[self].url
	if m.PeerURL != "" {
		u, problem := parseURL(m.PeerURL)
		if problem != "" {
			return m, cfgErr(flagPeer, "%q %s", m.PeerURL, problem)
		}
		if u != own {
			return m, cfgErr(flagPeer, "%s differs from member %q's URL %s in --%s: make them the same", u.String(), m.Name, own.String(), flagInitial)
		}
	}
	if problem := listenable(own); problem != "" {
		return m, cfgErr(flagInitial, "member %q (this host) has peer URL %s: %s", m.Name, own.String(), problem)
	}
	m.PeerURL = own.String()

	eps, err := parseEndpoints(endpoints, peers)
	if err != nil {
		return m, err
	}
	if m.ClientURL == "" {
		var same []url.URL
		for _, e := range eps {
			if e.Hostname() == own.Hostname() {
				same = append(same, e)
			}
		}
		if len(same) != 1 {
			return m, cfgErr(flagClient, "missing, and it cannot be picked from --%s (%d of its URLs have this member's IP %s): give this member's client URL, e.g. http://%s",
				flagEndpoints, len(same), own.Hostname(), net.JoinHostPort(own.Hostname(), "2379"))
		}
		m.ClientURL = same[0].String()
	}
	cu, problem := parseURL(m.ClientURL)
	if problem == "" {
		problem = listenable(cu)
	}
	if problem != "" {
		return m, cfgErr(flagClient, "%q %s", m.ClientURL, problem)
	}
	found := false
	for _, e := range eps {
		found = found || e == cu
	}
	if !found {
		return m, cfgErr(flagEndpoints, "does not list this member's client URL %s (--%s): list every member's client URL", cu.String(), flagClient)
	}
	m.ClientURL = cu.String()
	return m, nil
}

// parseInitialCluster parses NAME=http://IP:PORT,... (blank entries skipped).
func parseInitialCluster(s string) ([]peer, error) {
	const form = "write NAME=http://IP:PORT"
	var peers []peer
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, raw, hasEq := strings.Cut(item, "=")
		name, raw = strings.TrimSpace(name), strings.TrimSpace(raw)
		switch {
		case !hasEq && strings.Contains(item, "://"), hasEq && name == "":
			return nil, cfgErr(flagInitial, "%q has no member name: %s", item, form)
		case raw == "":
			return nil, cfgErr(flagInitial, "member %q has no peer URL: %s", name, form)
		}
		u, problem := parseURL(raw)
		if problem != "" {
			return nil, cfgErr(flagInitial, "member %q: peer URL %q %s", name, raw, problem)
		}
		for _, p := range peers {
			if p.name == name {
				return nil, cfgErr(flagInitial, "member %q is listed twice: give each member one NAME=http://IP:PORT", name)
			}
			if p.url == u {
				return nil, cfgErr(flagInitial, "members %q and %q have the same peer URL %s: give each its own", p.name, name, u.String())
			}
		}
		peers = append(peers, peer{name, u})
	}
	if len(peers) == 0 {
		return nil, cfgErr(flagInitial, "empty: %s,... with every member of the etcd cluster", form)
	}
	return peers, nil
}

// parseEndpoints checks that endpoints are one client URL per member.
func parseEndpoints(endpoints []string, peers []peer) ([]url.URL, error) {
	if len(endpoints) == 0 {
		return nil, cfgErr(flagEndpoints, "empty: with --%s, list every member's client URL, e.g. http://IP1:2379,http://IP2:2379,http://IP3:2379", flagInitial)
	}
	var eps []url.URL
	for _, e := range endpoints {
		u, problem := parseURL(e)
		if problem != "" {
			return nil, cfgErr(flagEndpoints, "%q %s", e, problem)
		}
		for _, p := range peers {
			if p.url == u {
				return nil, cfgErr(flagEndpoints, "%s is member %q's peer URL in --%s: list client URLs (port 2379), not peer URLs (2380)", u.String(), p.name, flagInitial)
			}
		}
		for _, o := range eps {
			if o == u {
				return nil, cfgErr(flagEndpoints, "%s is listed twice: list each member's client URL once", u.String())
			}
		}
		eps = append(eps, u)
	}
	if len(eps) != len(peers) {
		return nil, cfgErr(flagEndpoints, "lists %d client URLs for the %d members of --%s: list every member's client URL, one each", len(eps), len(peers), flagInitial)
	}
	return eps, nil
}

// parseURL parses http://HOST:PORT (or https://, for etcd TLS) into its
// normal form, or says what is wrong with s.
func parseURL(s string) (url.URL, string) {
	const form = "is not http://IP:PORT"
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return url.URL{}, form
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return url.URL{}, fmt.Sprintf("has scheme %q: use http:// (https:// with etcd TLS)", u.Scheme)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return url.URL{}, form + " (no user, path or query)"
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return url.URL{}, form + " (it needs a port)"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return url.URL{}, form + " (the port is a number from 1 to 65535)"
	}
	return url.URL{Scheme: u.Scheme, Host: net.JoinHostPort(host, port)}, ""
}

// listenable says why this host cannot listen on and advertise u, if so.
func listenable(u url.URL) string {
	ip := net.ParseIP(u.Hostname())
	switch {
	case ip == nil:
		return "needs an IP address, not a host name: this host listens on it"
	case ip.IsUnspecified():
		return "needs this host's own IP address: the other members connect to it"
	}
	return ""
}
