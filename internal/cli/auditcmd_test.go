package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/apitoken"
)

// TestTokenCreate adds tokens with roles to a token file, as an admin
// would for a CI system or a dashboard, and checks the file and --out.
func TestTokenCreate(t *testing.T) {
	dir := t.TempDir()
	file, out := filepath.Join(dir, "tokens"), filepath.Join(dir, "ci.token")
	os.WriteFile(file, []byte("old-admin-token\n"), 0o600)
	run := func(args ...string) (string, error) {
		root := NewRootCmd()
		var b bytes.Buffer
		root.SetOut(&b)
		root.SetArgs(args)
		err := root.Execute()
		return b.String(), err
	}
	printed, err := run("token", "create", "--token-file", file, "--name", "dash")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run("token", "create", "--token-file", file, "--name", "ci", "--role", "operator", "--out", out); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(file)
	toks, err := apitoken.Parse(string(b))
	if err != nil || len(toks) != 3 {
		t.Fatalf("token file %q: %v", b, err)
	}
	if toks[0].Secret != "old-admin-token" || toks[0].Role != apitoken.Admin {
		t.Errorf("the old token changed: %+v", toks[0])
	}
	if toks[1].Secret != strings.TrimSpace(printed) || toks[1].Role != apitoken.Viewer || toks[1].Name != "dash" {
		t.Errorf("printed %q, file has %+v", printed, toks[1])
	}
	o, _ := os.ReadFile(out)
	if st, _ := os.Stat(out); toks[2].Secret != strings.TrimSpace(string(o)) || toks[2].Role != apitoken.Operator || st.Mode().Perm() != 0o600 {
		t.Errorf("--out %q (%v), file has %+v", o, st.Mode(), toks[2])
	}
	if apitoken.FirstSecret(string(o)) != toks[2].Secret {
		t.Error("the --out file is not a client token file")
	}
	for _, bad := range [][]string{
		{"token", "create", "--token-file", file, "--name", "ci"},                  // taken
		{"token", "create", "--token-file", file, "--name", "x", "--role", "root"}, // no such role
		{"token", "create", "--token-file", file, "--name", "a b"},                 // bad name
	} {
		if _, err := run(bad...); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
	if b2, _ := os.ReadFile(file); !bytes.Equal(b, b2) {
		t.Errorf("refused creates changed the file: %q", b2)
	}
}
