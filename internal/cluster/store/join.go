package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/govisor/govisor/api"
)

// MaxMembers is how many etcd members joining hosts grow the cluster to;
// hosts that join after that are clients of those members. Three members
// survive the loss of one host, as the cluster's HA needs.
const MaxMembers = 3

// AddMember lets host name join the cluster: while the cluster has fewer
// than MaxMembers etcd members it adds one at peerURL, as a learner (etcd's
// safe way to grow: a learner does not count for the quorum until it is
// promoted, so a host that never comes up cannot stall the cluster), and
// answers with the initial cluster it must start with. A host that joined
// before (a restart, or a retry) gets the same answer.
func (s *Store) AddMember(ctx context.Context, name, peerURL string) (api.JoinInfo, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if u, problem := parseURL(peerURL); problem != "" {
		return api.JoinInfo{}, fmt.Errorf("%w: peer URL %q %s", ErrInvalid, peerURL, problem)
	} else if u.Scheme != s.tls.scheme() {
		return api.JoinInfo{}, fmt.Errorf("%w: peer URL %q: this cluster's etcd URLs are %s://", ErrInvalid, peerURL, s.tls.scheme())
	}
	list, err := s.cli.MemberList(ctx)
	if err != nil {
		return api.JoinInfo{}, s.fail("list the etcd members", err)
	}
	members := list.Members
	found := false
	for _, m := range members {
		same := slices.Contains(m.PeerURLs, peerURL)
		switch {
		case m.Name == name && !same:
			return api.JoinInfo{}, fmt.Errorf("%w: etcd member %s exists with peer URL %s, not %s: join with that URL, or remove the member first (etcdctl member remove)",
				ErrInvalid, name, strings.Join(m.PeerURLs, ","), peerURL)
		case same && m.Name != "" && m.Name != name:
			return api.JoinInfo{}, fmt.Errorf("%w: peer URL %s is etcd member %s's, not %s's: give this host its own", ErrInvalid, peerURL, m.Name, name)
		case same:
			found = true
		}
	}
	if !found && len(members) >= MaxMembers {
		return api.JoinInfo{Endpoints: clientURLs(members)}, nil
	}
	if !found {
		resp, err := s.addLearner(ctx, peerURL)
		if err != nil {
			return api.JoinInfo{}, s.fail("add etcd member "+name, err)
		}
		members = resp.Members
	}
	var initial []string
	for _, m := range members {
		n := m.Name
		if slices.Contains(m.PeerURLs, peerURL) {
			n = name // not started yet: etcd knows no name for it
		}
		if n == "" {
			continue // another learner that never started: not part of the start
		}
		for _, u := range m.PeerURLs {
			initial = append(initial, n+"="+u)
		}
	}
	return api.JoinInfo{Member: true, InitialCluster: strings.Join(initial, ","), Endpoints: clientURLs(members)}, nil
}

// addLearner adds a learner at peerURL. etcd refuses to change its
// membership until every member has been connected for a few seconds
// ("unhealthy cluster", its strict reconfiguration check): right after
// another host joined, it is tried again until ctx ends.
func (s *Store) addLearner(ctx context.Context, peerURL string) (*clientv3.MemberAddResponse, error) {
	for {
		resp, err := s.cli.MemberAddAsLearner(ctx, []string{peerURL})
		if err == nil || !strings.Contains(err.Error(), "unhealthy cluster") {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// clientURLs are the members' client URLs (a member that has not started
// has none yet).
func clientURLs(members []*etcdMember) []string {
	var out []string
	for _, m := range members {
		out = append(out, m.ClientURLs...)
	}
	return out
}

// promote makes the learner id a voting member once it has caught up with
// the leader, asking through the other members at endpoints.
func promote(ctx context.Context, endpoints []string, id uint64, timeout time.Duration, t *TLS) error {
	cli, err := newClient(ctx, endpoints, timeout, t)
	if err != nil {
		return fmt.Errorf("store: connect to promote this member: %w", err)
	}
	defer cli.Close()
	deadline := time.Now().Add(timeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cli.MemberPromote(pctx, id)
		cancel()
		if err == nil || strings.Contains(err.Error(), "not a learner") {
			return nil
		}
		// "can only promote a learner member which is in sync with leader"
		// while it catches up; anything else may be a passing election.
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("store: this etcd member (a learner) was not promoted in %v: %w", timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// ErrInvalid is wrapped by the errors for a join that cannot be granted
// as asked.
var ErrInvalid = errors.New("store: invalid join")

type etcdMember = etcdserverpb.Member
