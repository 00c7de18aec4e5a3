// Package apitoken holds the agent's API tokens and who they stand for
// (issue 15, "roles on tokens"): each token has a name, which the audit
// log records, and a role (admin, operator or viewer), which decides the
// routes it may call. The token file holds one token a line:
//
//	SECRET [role=ROLE] [name=NAME]
//
// A bare SECRET, as every token file before roles held, is an admin named
// after a hash of the secret.
package apitoken

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Role is what a token may do.
type Role string

// The roles, from most to least trusted.
const (
	// Admin may call every route.
	Admin Role = "admin"
	// Operator runs VMs: their lifecycle, disks, snapshots and migrations,
	// but not pools, networks, cluster settings, hosts or the audit log.
	Operator Role = "operator"
	// Viewer only reads (GET and HEAD).
	Viewer Role = "viewer"
)

// rank orders the roles: a higher one may do what a lower one may.
func (r Role) rank() int {
	switch r {
	case Admin:
		return 3
	case Operator:
		return 2
	case Viewer:
		return 1
	}
	return 0
}

// Allows reports whether r may do what need requires.
func (r Role) Allows(need Role) bool { return r.rank() >= need.rank() && need.rank() > 0 }

// ParseRole checks a role's name.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if r.rank() == 0 {
		return "", fmt.Errorf("role %q: give admin, operator or viewer", s)
	}
	return r, nil
}

// Identity is who made a request: the name of its token and its role.
type Identity struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
}

// Local is the identity of the agent's Unix socket, which only the agent's
// own user (root) reaches: it may do everything.
var Local = Identity{Name: "local", Role: Admin}

type ctxKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity the listener's authentication put in
// ctx, if any.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// Token is one line of a token file.
type Token struct {
	Secret string
	Identity
}

// nameRE is what a token name may be: it shows up in logs and tables.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$`)

// DefaultName names a token that has no name=: a hash prefix, which tells
// tokens apart without revealing them.
func DefaultName(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return "token-" + hex.EncodeToString(h[:4])
}

// Parse reads a token file's text: blank lines and lines starting with #
// are skipped.
func Parse(text string) ([]Token, error) {
	var toks []Token
	names := map[string]int{}
	for i, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		t := Token{Secret: f[0], Identity: Identity{Name: DefaultName(f[0]), Role: Admin}}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "role":
				r, err := ParseRole(v)
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", i+1, err)
				}
				t.Role = r
			case "name":
				if !nameRE.MatchString(v) {
					return nil, fmt.Errorf("line %d: name %q: use letters, digits, . _ @ - (at most 63)", i+1, v)
				}
				t.Name = v
			default:
				return nil, fmt.Errorf("line %d: %q: want role=ROLE or name=NAME after the token", i+1, kv)
			}
		}
		if prev, ok := names[t.Name]; ok {
			return nil, fmt.Errorf("line %d: name %q is taken by line %d: the audit log could not tell them apart", i+1, t.Name, prev)
		}
		names[t.Name] = i + 1
		toks = append(toks, t)
	}
	return toks, nil
}

// Line is how t is written in a token file.
func (t Token) Line() string {
	return fmt.Sprintf("%s role=%s name=%s", t.Secret, t.Role, t.Name)
}

// NewSecret returns a new random token: 32 bytes, URL-safe base64.
func NewSecret() string {
	var b [32]byte
	rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Lookup finds the identity of secret among toks, comparing with every
// token in constant time: no timing hint on which one matched, or how
// much of one.
func Lookup(toks []Token, secret string) (Identity, bool) {
	var id Identity
	found := false
	for _, t := range toks {
		if subtle.ConstantTimeCompare([]byte(secret), []byte(t.Secret)) == 1 {
			id, found = t.Identity, true
		}
	}
	return id, found && secret != ""
}

// File is a token file the agent serves from. It is read again when it
// changes (size or modification time), so a token added by `govisor token
// create` or removed by hand counts from the next request, without a
// restart.
type File struct {
	path string
	// recheck is how often the file's metadata is looked at.
	recheck time.Duration

	mu      sync.Mutex
	toks    []Token
	size    int64
	mtime   time.Time
	checked time.Time
}

// Open reads the token file at path; it must hold at least one token.
func Open(path string) (*File, error) {
	f := &File{path: path, recheck: time.Second}
	if err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *File) load() error {
	st, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	toks, err := Parse(string(b))
	if err != nil {
		return fmt.Errorf("token file %s: %w", f.path, err)
	}
	if len(toks) == 0 {
		return fmt.Errorf("token file %s holds no tokens", f.path)
	}
	f.toks, f.size, f.mtime = toks, st.Size(), st.ModTime()
	return nil
}

// Tokens returns the file's tokens as last read.
func (f *File) Tokens() []Token {
	f.refresh()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.toks
}

// Lookup finds the identity of secret in the file.
func (f *File) Lookup(secret string) (Identity, bool) {
	return Lookup(f.Tokens(), secret)
}

// refresh re-reads the file if it changed. A file broken by a bad edit
// keeps the tokens last read: locking every client out for a typo would
// be worse.
func (f *File) refresh() {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if now.Sub(f.checked) < f.recheck {
		return
	}
	f.checked = now
	st, err := os.Stat(f.path)
	if err != nil || (st.Size() == f.size && st.ModTime().Equal(f.mtime)) {
		return
	}
	toks, size, mtime := f.toks, f.size, f.mtime
	if err := f.load(); err != nil {
		f.toks, f.size, f.mtime = toks, size, mtime
	}
}

// Append adds t to the token file at path (created 0600 if missing), after
// checking the file still parses with it.
func Append(path string, t Token) error {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("token file: %w", err)
	}
	add := t.Line() + "\n"
	if len(b) > 0 && b[len(b)-1] != '\n' {
		add = "\n" + add // end the last line first
	}
	if _, err := Parse(string(b) + add); err != nil {
		return fmt.Errorf("token file %s: %w", path, err)
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	if _, err := fh.WriteString(add); err != nil {
		fh.Close()
		return fmt.Errorf("token file %s: %w", path, err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("token file %s: %w", path, err)
	}
	return nil
}

// FirstSecret returns the first token of a token file's text (what a client
// sends): the first field of its first line that is not blank or a comment.
func FirstSecret(text string) string {
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			return f[0]
		}
	}
	return ""
}
