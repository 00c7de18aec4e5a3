package agent

import (
	"context"
	"time"
)

// Socket names in a VM's directory: every VMM is spawned with them, so the
// agent (and an agent that adopts the VMM later) finds them there. The
// agent talks to a VMM through its API socket with a vmmapi.Client.
const (
	apiSockName     = "api.sock"
	consoleSockName = "console.sock"
)

// vmmCallTimeout bounds a quick VMM API call (pause, resume, shutdown,
// migration progress): a hung VMM must not hang the agent.
const vmmCallTimeout = 5 * time.Second

// quickCall runs one quick VMM API call, a method of a vmmapi.Client,
// bounded by vmmCallTimeout.
func quickCall[T any](call func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), vmmCallTimeout)
	defer cancel()
	return call(ctx)
}
