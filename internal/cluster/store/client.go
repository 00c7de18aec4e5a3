package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ErrUnavailable is a store request that etcd did not answer in time: no
// quorum of members reachable, or none elected a leader yet.
var ErrUnavailable = errors.New("store: etcd unavailable")

// The etcd client balances requests over every endpoint (gRPC round
// robin). A member whose machine lost power, or was cut off the network,
// sends no RST: without keep-alives its connection stays "ready", and every
// request picked onto it hangs until its deadline, in periodic loops the
// same request each time, for as long as the kernel retransmits (about 15
// minutes), the host's lease keep-alive stream with it. With keep-alives,
// gRPC pings a connection that carries requests but reads nothing for
// keepAliveTime, and closes it when keepAliveTimeout passes without an
// answer (also its TCP_USER_TIMEOUT, for data sent and never acknowledged):
// a read in flight is retried on another member, a write fails once, and
// the dead member is left out until it answers again.
const (
	keepAliveTime    = 10 * time.Second // gRPC's minimum for clients
	keepAliveTimeout = 5 * time.Second
	// defaultRequestTimeout bounds a request whose context has no deadline
	// (API handlers): it outlasts an election and etcd's own request
	// timeout (5 s and two elections), and a lost quorum is reported
	// instead of a request that never returns.
	defaultRequestTimeout = 15 * time.Second
)

// newClient connects to endpoints. Pings without requests in flight stay
// off: etcd servers refuse them (GOAWAY too_many_pings).
// With t, it talks TLS and presents t's certificate.
func newClient(ctx context.Context, endpoints []string, dialTimeout time.Duration, t *TLS) (*clientv3.Client, error) {
	tc, err := t.clientConfig()
	if err != nil {
		return nil, err
	}
	return clientv3.New(clientv3.Config{
		Endpoints: endpoints, DialTimeout: dialTimeout, Context: context.WithoutCancel(ctx), Logger: zap.NewNop(),
		DialKeepAliveTime: keepAliveTime, DialKeepAliveTimeout: keepAliveTimeout, TLS: tc,
	})
}

// bound bounds one request by the store's request timeout unless ctx has a
// deadline.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.reqTimeout)
}

// fail is the error err of the request what ("list VMs"): "store: what:
// err", and when etcd did not answer in time, an ErrUnavailable that says
// why if it can.
func (s *Store) fail(what string, err error) error {
	if !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: no answer in time (%w): %s", ErrUnavailable, what, err, s.why())
}

// why guesses why etcd does not answer.
func (s *Store) why() string {
	if s.etc != nil && s.member != "" {
		if s.etc.Server.Leader() == 0 {
			return fmt.Sprintf("this host's etcd member %s has no leader: it does not reach a quorum (a majority) of the members, %s", s.member, strings.Join(s.endpoints, ", "))
		}
		return fmt.Sprintf("this host's etcd member %s has a leader; is the cluster overloaded, or did it just lose a quorum (a majority) of the members, %s?", s.member, strings.Join(s.endpoints, ", "))
	}
	if s.etc != nil {
		return "the embedded etcd is overloaded or stuck"
	}
	return fmt.Sprintf("is a quorum (a majority) of the etcd members %s reachable?", strings.Join(s.endpoints, ", "))
}
