package client

import (
	"errors"
	"fmt"
	"testing"
)

func TestNewOptions(t *testing.T) {
	cases := []struct {
		o  Options
		ok bool
	}{
		{Options{}, true},
		{Options{Socket: "/tmp/x.sock"}, true},
		{Options{URL: "https://h:8443"}, true},
		{Options{URL: "https://h:8443/"}, true},
		{Options{Socket: "/s", URL: "https://h"}, false},
		{Options{URL: "ftp://h"}, false},
		{Options{URL: "h:8443"}, false},
	}
	for _, c := range cases {
		_, err := New(c.o)
		if (err == nil) != c.ok {
			t.Errorf("New(%+v): %v, want ok %v", c.o, err, c.ok)
		}
	}
}

func TestErrorIs(t *testing.T) {
	sentinels := []error{ErrInvalid, ErrUnauthorized, ErrNotFound, ErrConflict, ErrTimeout, ErrServer}
	cases := []struct {
		code int
		want error
	}{
		{400, ErrInvalid}, {401, ErrUnauthorized}, {404, ErrNotFound}, {409, ErrConflict},
		{504, ErrTimeout}, {500, ErrServer}, {503, ErrServer}, {421, nil},
	}
	for _, c := range cases {
		err := fmt.Errorf("wrapped: %w", &Error{StatusCode: c.code, Message: "m"})
		for _, s := range sentinels {
			if got := errors.Is(err, s); got != (s == c.want) {
				t.Errorf("status %d: errors.Is(%v) = %v", c.code, s, got)
			}
		}
	}
}

// TestBadGateway: a failed VMM or peer agent (502) is a server error too.
func TestBadGateway(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &Error{StatusCode: 502, Message: "migration failed"})
	if !errors.Is(err, ErrBadGateway) || !errors.Is(err, ErrServer) || errors.Is(err, ErrConflict) {
		t.Errorf("502 matches ErrBadGateway %v, ErrServer %v, ErrConflict %v",
			errors.Is(err, ErrBadGateway), errors.Is(err, ErrServer), errors.Is(err, ErrConflict))
	}
	if errors.Is(&Error{StatusCode: 500}, ErrBadGateway) {
		t.Error("500 matches ErrBadGateway")
	}
}
