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
