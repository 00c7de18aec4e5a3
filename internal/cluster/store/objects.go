package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// objError is an error with its own message that matches one of the
// store's sentinels (ErrNotFound, ErrExists, ErrConflict), so that a
// network's 404 does not speak of VMs.
type objError struct {
	msg  string
	kind error
}

func (e *objError) Error() string { return e.msg }
func (e *objError) Unwrap() error { return e.kind }

func objErrorf(kind error, format string, args ...any) error {
	return &objError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// createJSON stores v at key unless the key exists (atomically); what
// names the object in errors ("network lan").
func (s *Store) createJSON(ctx context.Context, key, what string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encode %s: %w", what, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	// The create revision of a missing key is 0: the put only happens when
	// the name is free, atomically with the check.
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Commit()
	if err != nil {
		return s.fail("create "+what, err)
	}
	if !resp.Succeeded {
		return objErrorf(ErrExists, "%s already exists", what)
	}
	return nil
}

// getJSON decodes the object at key; what names it in errors.
func getJSON[T any](ctx context.Context, s *Store, key, what string) (T, error) {
	var v T
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return v, s.fail("read "+what, err)
	}
	if len(resp.Kvs) == 0 {
		return v, objErrorf(ErrNotFound, "no %s", what)
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &v); err != nil {
		return v, fmt.Errorf("store: decode %s: %w", what, err)
	}
	return v, nil
}

// listJSON decodes every object under prefix, in key order.
func listJSON[T any](ctx context.Context, s *Store, prefix string) ([]T, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, s.fail("list "+strings.Trim(prefix, "/"), err)
	}
	var out []T
	for _, kv := range resp.Kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("store: decode %s: %w", kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// deleteUnused deletes key after inUse, run on the current VMs, finds none
// of them using it; the delete only happens if no VM key changed since
// that check, so a VM defined meanwhile cannot lose its network or disk.
// The error of inUse aborts the delete.
func (s *Store) deleteUnused(ctx context.Context, key, what string, inUse func([]Record) error) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	for range 5 {
		recs, rev, err := s.ListVMs(ctx)
		if err != nil {
			return err
		}
		if err := inUse(recs); err != nil {
			return err
		}
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0),
				clientv3.Compare(clientv3.ModRevision(vmPrefix), "<", rev+1).WithPrefix()).
			Then(clientv3.OpDelete(key)).
			Else(clientv3.OpGet(key, clientv3.WithCountOnly())).
			Commit()
		if err != nil {
			return s.fail("delete "+what, err)
		}
		if resp.Succeeded {
			return nil
		}
		if r := resp.Responses[0].GetResponseRange(); r != nil && r.Count == 0 {
			return objErrorf(ErrNotFound, "no %s", what)
		}
	}
	return objErrorf(ErrConflict, "%s: VMs changed while deleting it, try again", what)
}
