package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/httpapi"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/apiguard"
	"github.com/govisor/govisor/internal/audit"
	"github.com/govisor/govisor/internal/webauth"
)

// fuzzOp is one operation of openapi.yaml.
type fuzzOp struct {
	method, path string
	body         *openapi3.SchemaRef // the JSON request body's schema, if any
}

// fuzzOps are openapi.yaml's operations, in a stable order (the fuzzer
// picks them by index).
func fuzzOps(t testing.TB) []fuzzOp {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	var ops []fuzzOp
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			o := fuzzOp{method: method, path: path}
			if rb := op.RequestBody; rb != nil && rb.Value != nil {
				if mt := rb.Value.Content.Get("application/json"); mt != nil {
					o.body = mt.Schema
				}
			}
			ops = append(ops, o)
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].path+" "+ops[i].method < ops[j].path+" "+ops[j].method })
	return ops
}

// sampleJSON is a value of schema s with every property filled in (enums
// and examples where given): a seed the fuzzer mutates into near misses.
func sampleJSON(s *openapi3.SchemaRef, depth int) any {
	if s == nil || s.Value == nil || depth > 4 {
		return nil
	}
	v := s.Value
	if len(v.Enum) > 0 {
		return v.Enum[0]
	}
	if v.Example != nil {
		return v.Example
	}
	switch {
	case v.Type.Is("object"):
		m := map[string]any{}
		for name, p := range v.Properties {
			m[name] = sampleJSON(p, depth+1)
		}
		return m
	case v.Type.Is("array"):
		return []any{sampleJSON(v.Items, depth+1)}
	case v.Type.Is("string"):
		return "fz"
	case v.Type.Is("integer"), v.Type.Is("number"):
		return 1
	case v.Type.Is("boolean"):
		return true
	}
	return nil
}

// fuzzServices is the agent with what would change the host itself left
// out: a network's bridge, a pool's folder and a volume's file are
// checked as the agent checks them, and not made. The fuzzer may send
// any definition; the machine running it must not get a bridge for each.
type fuzzServices struct {
	service.Services
	a *Agent
}

func (f fuzzServices) CreateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	n, err := normalizeNetwork(n)
	if err == nil {
		err = f.a.nets.checkNewNetwork(ctx, n)
	}
	return n, err
}

func (f fuzzServices) CreatePool(ctx context.Context, p api.Pool) (api.Pool, error) {
	p, err := normalizePool(p, f.a.cfg.HostName)
	if err == nil {
		err = f.a.pools.checkNewPool(ctx, p)
	}
	return p, err
}

func (f fuzzServices) CreateVolume(ctx context.Context, pool string, c api.VolumeCreate) (api.Volume, error) {
	p, err := f.a.pools.localPool(ctx, pool)
	if err == nil {
		_, _, err = checkVolumeCreate(p, &c)
	}
	return api.Volume{}, err
}

// FuzzAPI sends the agent's API (the handler its Unix socket serves,
// guard and all) every operation of openapi.yaml with a fuzzed path
// parameter, query and JSON body (issue 15). Bad input must never get a
// 5xx nor a panic. The agent needs no KVM: its VMMs' binary does not
// exist, so no VM it is asked to start runs.
func FuzzAPI(f *testing.F) {
	ops := fuzzOps(f)
	for i, op := range ops {
		var sample []byte
		if op.body != nil {
			sample, _ = json.Marshal(sampleJSON(op.body, 0))
		}
		for _, body := range [][]byte{nil, []byte("{}"), sample, []byte(`{"name":"fz","x":[1,{"y":null}]}`)} {
			f.Add(uint16(i), "fz", "", body)
		}
		f.Add(uint16(i), "../../x%2f", "wait=10ms&since=-1&from=x&limit=0&step=1h", []byte(`[]`))
	}
	dir := f.TempDir()
	ta := startAgent(f, dir, func(c *Config) { c.Executable, c.NoJail = filepath.Join(dir, "no-such-govisor"), true })
	f.Cleanup(func() { ta.Close() })
	log, err := audit.Open(filepath.Join(dir, "fuzz-"+audit.FileName))
	if err != nil {
		f.Fatal(err)
	}
	h := webauth.Open(httpapi.New(fuzzServices{ta.Services(), ta.Agent}, httpapi.Options{
		Guard: &apiguard.Guard{Audit: log, MaxBody: maxBody}, Audit: log, Metrics: ta.metricsHandler(),
	}))
	f.Fuzz(func(t *testing.T, opIndex uint16, param, query string, body []byte) {
		op := ops[int(opIndex)%len(ops)]
		path := op.path
		for strings.Contains(path, "{") {
			i := strings.Index(path, "{")
			j := strings.Index(path[i:], "}")
			path = path[:i] + url.PathEscape(param) + path[i+j+1:]
		}
		u, err := url.Parse(path)
		if err != nil {
			return // not a request a client could send
		}
		u.RawQuery = query
		// Long enough for any answer but an event stream's (which answers
		// 200 at once and then streams until the client leaves).
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r := httptest.NewRequestWithContext(ctx, op.method, "http://govisor"+path, bytes.NewReader(body))
		r.URL.RawQuery = u.RawQuery
		r.RequestURI = ""
		if body != nil {
			r.Header.Set("Content-Type", "application/json")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r) // a panic fails the test with the input
		if ctx.Err() != nil && rec.Code == http.StatusGatewayTimeout {
			return // the request's own deadline, such as a ?wait= longer than it
		}
		if rec.Code >= 500 {
			t.Fatalf("%s %s?%s with %q: %d %s", op.method, path, query, body, rec.Code, rec.Body)
		}
	})
}
