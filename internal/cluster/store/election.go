package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// leaderPrefix is the election of the agent that runs the cluster's
// controllers (placement, HA, balancing, maintenance).
const leaderPrefix = "/govisor/leader"

// Leadership is this agent's leadership of the cluster, won by Campaign.
// It ends when its etcd session expires (this agent lost etcd for the
// session's TTL), when Resign is called, or when the store closes.
type Leadership struct {
	sess *concurrency.Session
	el   *concurrency.Election
	name string
}

// Campaign waits until this agent (name) leads the cluster, or ctx ends.
// The leadership lives on an etcd session with ttl: a leader that dies or
// is cut off loses it within ttl, and the next candidate takes over
// (etcd's concurrency.Election: candidates queue by creation revision).
func (s *Store) Campaign(ctx context.Context, name string, ttl time.Duration) (*Leadership, error) {
	if ttl < 2*time.Second {
		return nil, fmt.Errorf("store: leader session TTL %v: give at least 2s", ttl)
	}
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(int(ttl/time.Second)), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, s.fail("open a leader session for "+name, err)
	}
	el := concurrency.NewElection(sess, leaderPrefix)
	if err := el.Campaign(ctx, name); err != nil {
		sess.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, s.fail("campaign for leader as "+name, err)
	}
	return &Leadership{sess: sess, el: el, name: name}, nil
}

// Done is closed when the leadership is lost: the controllers must stop
// acting at once (another agent may lead already).
func (l *Leadership) Done() <-chan struct{} { return l.sess.Done() }

// Resign gives the leadership up (an agent that stops), so that the next
// candidate takes over without waiting for the session to expire.
func (l *Leadership) Resign(ctx context.Context) error {
	err := l.el.Resign(ctx)
	return errors.Join(err, l.sess.Close())
}

// Leader names the cluster's current leader ("" when there is none): the
// oldest candidate, as etcd's election orders them.
func (s *Store) Leader(ctx context.Context) (string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, leaderPrefix+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", s.fail("ask for the leader", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}
