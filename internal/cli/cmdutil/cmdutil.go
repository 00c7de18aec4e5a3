// Package cmdutil holds what govisor's command packages share: the error
// that carries an exit code, and flag defaults from the environment. It is
// a leaf so that the agent binary's commands (serve, lab) need not link the
// whole CLI, and with it the VMM.
package cmdutil

import (
	"fmt"
	"os"
)

// ExitError carries a process exit code out of a subcommand.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// EnvOr returns the environment variable key, or def when it is unset.
func EnvOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
