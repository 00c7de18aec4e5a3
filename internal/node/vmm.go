// Package node is the host side of the agent: the reconciler that makes
// this host's VMM processes match the desired state in etcd (Node), and
// what deals with one VMM process (Proc): its config, spawning a `govisor
// run` child, adopting one a previous agent left running (found in /proc
// by its marker), signalling and stopping it, and quick calls to its
// control API. It also keeps the destination VMMs of live migrations to
// this host and makes the host's bridges and TAPs. The agent's services
// call it for host-local operations.
package node

import (
	"context"
	"time"
)

// Socket names in a VM's directory: every VMM is spawned with them, so the
// agent (and an agent that adopts the VMM later) finds them there. The
// agent talks to a VMM through its API socket with a vmmapi.Client.
const (
	APISock     = "api.sock"
	ConsoleSock = "console.sock"
)

// CallTimeout bounds a quick VMM API call (pause, resume, shutdown,
// migration progress): a hung VMM must not hang the agent.
const CallTimeout = 5 * time.Second

// QuickCall runs one quick VMM API call, a method of a vmmapi.Client,
// bounded by CallTimeout.
func QuickCall[T any](call func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	return call(ctx)
}
