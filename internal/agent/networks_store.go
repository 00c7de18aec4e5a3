package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// objError is an error with its own message that matches a sentinel the
// API maps to a status code (store.ErrNotFound, store.ErrExists, ErrBusy,
// ErrNotHere), so that a network's 404 does not speak of VMs.
type objError struct {
	msg  string
	kind error
}

func (e *objError) Error() string { return e.msg }
func (e *objError) Unwrap() error { return e.kind }

func errf(kind error, format string, args ...any) error {
	return &objError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// decodeObject reads a request body, one JSON object, into v, refusing
// unknown fields by name; what names the expected object in the error.
// Every handler that takes a JSON body uses it.
func decodeObject(r *http.Request, v any, what string) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return &FieldError{te.Field, fmt.Sprintf("want a %s, not a JSON %s", te.Type, te.Value)}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return &FieldError{f, "unknown field"}
		}
		return fmt.Errorf("%w: body is not %s in JSON: %v", ErrInvalid, what, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: body holds more than one JSON object", ErrInvalid)
	}
	return nil
}
