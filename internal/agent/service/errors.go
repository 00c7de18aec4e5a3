package service

import (
	"errors"
	"fmt"
)

// Errors the services return; the HTTP layer maps each to a status code.
// store.ErrNotFound, store.ErrExists, store.ErrConflict and
// store.ErrUnavailable pass through the services unchanged.
var (
	ErrInvalid = errors.New("agent: invalid request")
	ErrBusy    = errors.New("agent: VM is not stopped")
	ErrNotHere = errors.New("agent: VM runs on another host")
	// ErrVMM is the sentinel of a VMM that refused or failed a request.
	ErrVMM = errors.New("agent: the VMM failed the request")
	// ErrNoHost: no host can take the VM (the error lists each host's reasons).
	ErrNoHost = errors.New("agent: no host can take the VM")
	// ErrNoSuchHost: the request names a host the cluster does not know.
	ErrNoSuchHost = errors.New("agent: no such host")
)

// FieldError is a bad request naming the offending field.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap makes every FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// objError is an error with its own message that matches a sentinel the
// API maps to a status code (store.ErrNotFound, store.ErrExists, ErrBusy,
// ErrNotHere), so that a network's 404 does not speak of VMs.
type objError struct {
	msg  string
	kind error
}

func (e *objError) Error() string { return e.msg }
func (e *objError) Unwrap() error { return e.kind }

// Errf is an error with the formatted message that matches kind.
func Errf(kind error, format string, args ...any) error {
	return &objError{msg: fmt.Sprintf(format, args...), kind: kind}
}
