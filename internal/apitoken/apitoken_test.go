package apitoken

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	toks, err := Parse("# API tokens\nold-bare\n\n  ro role=viewer name=alice\nop name=ci role=operator\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []Token{
		{"old-bare", Identity{DefaultName("old-bare"), Admin}},
		{"ro", Identity{"alice", Viewer}},
		{"op", Identity{"ci", Operator}},
	}
	if len(toks) != len(want) {
		t.Fatalf("got %v", toks)
	}
	for i := range want {
		if toks[i] != want[i] {
			t.Errorf("token %d: %+v, want %+v", i, toks[i], want[i])
		}
	}
	for _, bad := range []string{"x role=root", "x name=a/b", "x colour=red", "x name=a\ny name=a"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestRoles(t *testing.T) {
	cases := []struct {
		have, need Role
		ok         bool
	}{
		{Admin, Admin, true}, {Admin, Viewer, true}, {Operator, Operator, true}, {Operator, Admin, false},
		{Viewer, Operator, false}, {Viewer, Viewer, true}, {"", Viewer, false}, {Admin, "", false},
	}
	for _, c := range cases {
		if got := c.have.Allows(c.need); got != c.ok {
			t.Errorf("%q allows %q: %v", c.have, c.need, got)
		}
	}
}

func TestLookup(t *testing.T) {
	toks, _ := Parse("a role=viewer name=v\nb\n")
	if id, ok := Lookup(toks, "a"); !ok || id != (Identity{"v", Viewer}) {
		t.Errorf("a: %v %v", id, ok)
	}
	for _, s := range []string{"", "ab", "c"} {
		if _, ok := Lookup(toks, s); ok {
			t.Errorf("%q found", s)
		}
	}
}

// TestFileReload appends a token (as `govisor token create` does) and
// sees the open file serve it; a broken edit keeps the tokens it had.
func TestFileReload(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(p, []byte("first"), 0o600)
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	f.recheck = 0
	if _, ok := f.Lookup("second"); ok {
		t.Fatal("second before it was added")
	}
	sec := NewSecret()
	if err := Append(p, Token{sec, Identity{"bob", Viewer}}); err != nil {
		t.Fatal(err)
	}
	if id, ok := f.Lookup(sec); !ok || id.Role != Viewer || id.Name != "bob" {
		t.Fatalf("new token: %v %v", id, ok)
	}
	if _, ok := f.Lookup("first"); !ok {
		t.Fatal("first token lost by the append")
	}
	b, _ := os.ReadFile(p)
	if !strings.HasPrefix(string(b), "first\n") {
		t.Fatalf("file: %q", b)
	}
	if err := Append(p, Token{"x", Identity{"bob", Admin}}); err == nil {
		t.Fatal("a second bob was appended")
	}
	os.WriteFile(p, []byte("broken role=god\n"), 0o600)
	os.Chtimes(p, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	if _, ok := f.Lookup(sec); !ok {
		t.Fatal("a broken file dropped the tokens")
	}
	if FirstSecret("# c\n\n  tok role=viewer\nother") != "tok" {
		t.Fatal("FirstSecret")
	}
}
