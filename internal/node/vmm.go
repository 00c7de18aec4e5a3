// Package node is the host side of the agent that deals with VMM
// processes: their configs, spawning `govisor run` children, adopting the
// ones a previous agent left running (found in /proc by their marker),
// signalling and stopping them, and quick calls to their control API.
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
