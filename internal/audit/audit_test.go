package audit

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
)

func TestAppendRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), FileName)
	l, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for i, who := range []string{"alice", "bob", "alice", "carol"} {
		rec := api.AuditRecord{Time: t0.Add(time.Duration(i) * time.Minute), Who: who, Role: "admin", Method: "POST", Path: "/v1/vms", Target: "vms/x", Status: 201}
		if err := l.Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	// A torn line, as a crash mid-write would leave.
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"time":"2026-12-06T10:`)
	f.Close()
	got, err := l.Read(Query{})
	if err != nil || len(got.Items) != 4 || got.Skipped != 1 {
		t.Fatalf("all: %+v %v", got, err)
	}
	if got, _ := l.Read(Query{Who: "alice"}); len(got.Items) != 2 || got.Items[1].Time != t0.Add(2*time.Minute) {
		t.Errorf("alice: %+v", got)
	}
	if got, _ := l.Read(Query{Since: t0.Add(90 * time.Second)}); len(got.Items) != 2 || got.Items[0].Who != "alice" {
		t.Errorf("since: %+v", got)
	}
	if got, _ := l.Read(Query{Limit: 1}); len(got.Items) != 1 || got.Items[0].Who != "carol" {
		t.Errorf("limit: %+v", got)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	l.Close()
	l, err = Open(p)
	if err != nil {
		t.Fatal(err)
	}
	l.Append(api.AuditRecord{Time: t0.Add(time.Hour), Who: "dave"})
	if got, _ := l.Read(Query{Who: "dave"}); len(got.Items) != 1 {
		t.Errorf("a record after a torn line: %+v", got)
	}
	l.Close()
	if err := l.Append(api.AuditRecord{}); err == nil {
		t.Error("append after close")
	}
}

// TestRotate fills a small log past its size: the old records move to
// FILE.1, Read still returns them all in order, and a second rotation
// drops the oldest file.
func TestRotate(t *testing.T) {
	p := filepath.Join(t.TempDir(), FileName)
	l, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.MaxSize = 1000
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	add := func(i int) {
		if err := l.Append(api.AuditRecord{Time: t0.Add(time.Duration(i) * time.Second), Who: "w", Method: "POST", Path: "/v1/vms", Status: 201}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12 { // about 110 bytes each: one rotation
		add(i)
	}
	if _, err := os.Stat(p + ".1"); err != nil {
		t.Fatalf("not rotated: %v", err)
	}
	got, err := l.Read(Query{})
	if err != nil || len(got.Items) != 12 {
		t.Fatalf("after one rotation: %d records, %v", len(got.Items), err)
	}
	for i, r := range got.Items {
		if !r.Time.Equal(t0.Add(time.Duration(i) * time.Second)) {
			t.Fatalf("record %d out of order: %v", i, r.Time)
		}
	}
	for i := 12; i < 30; i++ {
		add(i)
	}
	got, _ = l.Read(Query{})
	if n := len(got.Items); n >= 30 || n < 9 || !got.Items[n-1].Time.Equal(t0.Add(29*time.Second)) {
		t.Fatalf("after more rotations: %d records, last %v", n, got.Items[n-1].Time)
	}
	if st, _ := os.Stat(p); st.Size() > l.MaxSize {
		t.Errorf("current file %d bytes, over %d", st.Size(), l.MaxSize)
	}
}
