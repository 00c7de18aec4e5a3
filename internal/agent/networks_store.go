package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/govisor/govisor/internal/cluster/store"
)

// Networks and storage pools live beside the VMs in etcd, one JSON object
// per key:
//
//	/govisor/networks/<name>  api.Network (without usedBy)
//	/govisor/pools/<name>     api.Pool (without capacity figures)
const (
	netPrefix  = "/govisor/networks/"
	poolPrefix = "/govisor/pools/"
	vmsPrefix  = "/govisor/vms/" // package store's; compared against, never written here
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

// kvCreate stores v at key unless the key exists (atomically).
func (a *Agent) kvCreate(ctx context.Context, key, what string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("agent: encode %s: %w", what, err)
	}
	ctx, cancel := a.st.Bound(ctx)
	defer cancel()
	resp, err := a.st.Client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Commit()
	if err != nil {
		return a.st.Fail("create "+what, err)
	}
	if !resp.Succeeded {
		return errf(store.ErrExists, "%s already exists", what)
	}
	return nil
}

// kvGet decodes the object at key into v.
func (a *Agent) kvGet(ctx context.Context, key, what string, v any) error {
	ctx, cancel := a.st.Bound(ctx)
	defer cancel()
	resp, err := a.st.Client().Get(ctx, key)
	if err != nil {
		return a.st.Fail("read "+what, err)
	}
	if len(resp.Kvs) == 0 {
		return errf(store.ErrNotFound, "no %s", what)
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, v); err != nil {
		return fmt.Errorf("agent: decode %s: %w", what, err)
	}
	return nil
}

// kvList decodes every object under prefix, in key order, with fn.
func (a *Agent) kvList(ctx context.Context, prefix string, fn func(b []byte) error) error {
	ctx, cancel := a.st.Bound(ctx)
	defer cancel()
	resp, err := a.st.Client().Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return a.st.Fail("list "+strings.Trim(prefix, "/"), err)
	}
	for _, kv := range resp.Kvs {
		if err := fn(kv.Value); err != nil {
			return fmt.Errorf("agent: decode %s: %w", kv.Key, err)
		}
	}
	return nil
}

// kvDeleteUnused deletes key after inUse, run on the current VMs, finds
// none of them using it; the delete only happens if no VM key changed
// since that check, so a VM defined meanwhile cannot lose its network or
// disk. The error of inUse aborts the delete.
func (a *Agent) kvDeleteUnused(ctx context.Context, key, what string, inUse func([]store.Record) error) error {
	ctx, cancel := a.st.Bound(ctx)
	defer cancel()
	for range 5 {
		recs, rev, err := a.st.ListVMs(ctx)
		if err != nil {
			return err
		}
		if err := inUse(recs); err != nil {
			return err
		}
		resp, err := a.st.Client().Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0),
				clientv3.Compare(clientv3.ModRevision(vmsPrefix), "<", rev+1).WithPrefix()).
			Then(clientv3.OpDelete(key)).
			Else(clientv3.OpGet(key, clientv3.WithCountOnly())).
			Commit()
		if err != nil {
			return a.st.Fail("delete "+what, err)
		}
		if resp.Succeeded {
			return nil
		}
		if r := resp.Responses[0].GetResponseRange(); r != nil && r.Count == 0 {
			return errf(store.ErrNotFound, "no %s", what)
		}
	}
	return errf(store.ErrConflict, "%s: VMs changed while deleting it, try again", what)
}

// decodeObject reads one JSON object into v, refusing unknown fields by
// name; what names the expected object in the error.
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
