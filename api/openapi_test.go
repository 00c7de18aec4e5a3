package api_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"sigs.k8s.io/yaml"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent"
)

// schemaTypes maps each schema of openapi.yaml's components to the Go type
// of its JSON body.
var schemaTypes = map[string]reflect.Type{}

func init() {
	for _, v := range []any{
		api.VMSpec{}, api.DiskSpec{}, api.VMStatus{}, api.VM{}, api.VMList{}, api.Host{}, api.HostList{}, api.Event{}, api.Error{},
		api.NICSpec{}, api.Network{}, api.NetworkList{}, api.JoinRequest{}, api.JoinInfo{}, api.ClusterEvent{}, api.ClusterEventList{},
		api.Pool{}, api.PoolList{}, api.Volume{}, api.VolumeProgress{}, api.VolumeList{}, api.VolumeCreate{},
		api.ImportRequest{}, api.ImportResult{},
		api.SnapshotRequest{}, api.Snapshot{}, api.SnapshotList{}, api.RestoreRequest{},
		api.MigrateRequest{}, api.MigrationStatus{}, api.IncomingRequest{}, api.Incoming{},
		api.UsageSample{}, api.UsageReport{}, api.MaintenanceRequest{}, api.ClusterSettings{}, api.HostLoad{}, api.VMLoad{}, api.BalancePlan{}, api.BalanceMove{}, api.BalanceLoad{},
		api.AuditRecord{}, api.AuditList{},
	} {
		schemaTypes[reflect.TypeOf(v).Name()] = reflect.TypeOf(v)
	}
}

// loadOpenAPI loads openapi.yaml with kin-openapi and validates it with the
// default options, which reject keys OpenAPI does not define ("extra
// sibling fields": a ", " or ": " in an unquoted description turns the rest
// into such a key), dangling $refs, undeclared path parameters, and
// examples and defaults that do not fit their schema.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("openapi.yaml")
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// TestOpenAPIValid checks that openapi.yaml is a valid OpenAPI document
// and that no key in it lacks a value: the document has no nulls, so a key
// without one is part of a plain scalar that YAML split (an unquoted ", " in
// a flow mapping, or ": "), wherever it is, also where OpenAPI allows any
// key (properties, content types, paths).
func TestOpenAPIValid(t *testing.T) {
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case nil:
			t.Errorf("openapi.yaml: %s has no value: quote the text it was split from", path)
		case map[string]any:
			for k, e := range v {
				walk(path+"/"+k, e)
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s/%d", path, i), e)
			}
		}
	}
	walk("", doc)
	loadOpenAPI(t)
}

// TestOpenAPIMatchesRoutes checks the agent's routes against the
// document's operations both ways: every pattern the agent registers is a
// documented operation, and every documented operation reaches one of them
// (a concrete path such as /v1/vms/{name}/pause may be served by a wildcard
// pattern).
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	type operation struct {
		method, path string
		params       openapi3.Parameters
	}
	var ops []operation
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops = append(ops, operation{method, path, append(slices.Clone(item.Parameters), op.Parameters...)})
			documented[method+" "+path] = true
		}
	}
	served := map[string]bool{}
	mux := http.NewServeMux()
	for _, p := range agent.Routes() {
		served[p] = true
		mux.Handle(p, http.NotFoundHandler())
		if p != "/" && !documented[p] { // "/" is the 404 of unknown endpoints
			t.Errorf("the agent serves %s; openapi.yaml lacks it", p)
		}
	}
	for _, op := range ops {
		for _, url := range sampleURLs(op.path, op.params) {
			_, pattern := mux.Handler(httptest.NewRequest(op.method, url, nil))
			if pattern == "/" || !served[pattern] {
				t.Errorf("openapi.yaml has %s %s; the agent does not serve %s %s (pattern %q)", op.method, op.path, op.method, url, pattern)
			}
		}
	}
}

// sampleURLs are URLs of path: each path parameter takes every value of its
// enum, or else its example or a placeholder of its type.
func sampleURLs(path string, params openapi3.Parameters) []string {
	urls := []string{path}
	for _, p := range params {
		if p.Value.In != openapi3.ParameterInPath {
			continue
		}
		s := p.Value.Schema.Value
		var values []string
		switch {
		case len(s.Enum) > 0:
			for _, e := range s.Enum {
				values = append(values, fmt.Sprint(e))
			}
		case s.Example != nil:
			values = []string{fmt.Sprint(s.Example)}
		case s.Type.Is(openapi3.TypeInteger):
			values = []string{"0"}
		default:
			values = []string{"x"}
		}
		var next []string
		for _, u := range urls {
			for _, v := range values {
				next = append(next, strings.ReplaceAll(u, "{"+p.Value.Name+"}", v))
			}
		}
		urls = next
	}
	return urls
}

// TestOpenAPIMatchesTypes keeps openapi.yaml and the Go types in step: the
// document's schemas are the exported struct types of package api, and each
// lists exactly the JSON fields of its Go type, with a JSON type that fits
// the field's Go type, a $ref to the schema of a struct field's type, and
// the values of the Go constants as enums.
func TestOpenAPIMatchesTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	var goTypes []string
	for _, name := range exportedStructs(t) {
		goTypes = append(goTypes, name)
		if schemaTypes[name] == nil {
			t.Errorf("api.%s has no entry in this test's schemaTypes (and openapi.yaml may lack its schema)", name)
		}
	}
	for name := range doc.Components.Schemas {
		if !slices.Contains(goTypes, name) {
			t.Errorf("openapi.yaml has schema %s; package api has no such type", name)
		}
	}
	for name, rt := range schemaTypes {
		ref := doc.Components.Schemas[name]
		if ref == nil {
			t.Errorf("openapi.yaml lacks schema %s (api.%s)", name, name)
			continue
		}
		s := ref.Value
		if !s.Type.Is(openapi3.TypeObject) {
			t.Errorf("schema %s: type %v, want object", name, s.Type)
		}
		var fields, props []string
		omitEmpty := map[string]bool{}
		for i := range rt.NumField() {
			f := rt.Field(i)
			tag, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if tag == "" || tag == "-" {
				t.Errorf("api.%s.%s: give it a JSON name", name, f.Name)
				continue
			}
			fields = append(fields, tag)
			omitEmpty[tag] = slices.Contains(strings.Split(opts, ","), "omitempty")
			if p := s.Properties[tag]; p != nil {
				checkType(t, name+"."+tag, f.Type, p)
			}
		}
		for p := range s.Properties {
			props = append(props, p)
		}
		sort.Strings(fields)
		sort.Strings(props)
		if !slices.Equal(props, fields) {
			t.Errorf("schema %s: properties %v, Go type api.%s has %v", name, props, name, fields)
		}
		for _, r := range s.Required {
			if omitEmpty[r] {
				t.Errorf("schema %s: %s is required, yet api.%s omits it when empty", name, r, name)
			}
		}
	}
	enums := []struct {
		schema, prop string
		values       []string
	}{
		{"VMSpec", "boot", []string{api.BootLinux64, api.BootPVH}},
		{"VMSpec", "restartPolicy", []string{api.RestartNever, api.RestartOnFailure, api.RestartAlways}},
		{"VMStatus", "state", strs(api.States)},
		{"VM", "desired", strs([]api.Power{api.PowerRunning, api.PowerStopped})},
		{"Event", "desired", strs([]api.Power{api.PowerRunning, api.PowerStopped})},
		{"MigrationStatus", "state", []string{api.MigrationRunning, api.MigrationCompleted, api.MigrationFailed}},
		{"Network", "kind", []string{api.NetworkBridge}},
		{"Pool", "kind", []string{api.PoolDir, api.PoolShared}},
	}
	for _, e := range enums {
		p := doc.Components.Schemas[e.schema].Value.Properties[e.prop]
		var got []string
		for _, v := range p.Value.Enum {
			got = append(got, fmt.Sprint(v))
		}
		if !slices.Equal(got, e.values) {
			t.Errorf("schema %s.%s: enum %v, package api has %v", e.schema, e.prop, got, e.values)
		}
	}
}

func strs[S ~string](v []S) []string {
	var out []string
	for _, s := range v {
		out = append(out, string(s))
	}
	return out
}

// checkType reports where the schema of field where does not fit its Go
// type rt.
func checkType(t *testing.T, where string, rt reflect.Type, ref *openapi3.SchemaRef) {
	t.Helper()
	if rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	if rt.Kind() == reflect.Struct && rt != reflect.TypeFor[time.Time]() {
		if want := "#/components/schemas/" + rt.Name(); ref.Ref != want || schemaTypes[rt.Name()] != rt {
			t.Errorf("schema %s: $ref %q, want %q (api.%s)", where, ref.Ref, want, rt.Name())
		}
		return
	}
	s := ref.Value
	// typ reports unless the schema has type want and one of formats (any
	// format if none given).
	typ := func(want string, formats ...string) {
		if !s.Type.Is(want) || len(formats) > 0 && !slices.Contains(formats, s.Format) {
			t.Errorf("schema %s: type %v format %q; Go type %v wants %s with a format in %q", where, s.Type.Slice(), s.Format, rt, want, formats)
		}
	}
	switch rt.Kind() {
	case reflect.Struct: // time.Time
		typ(openapi3.TypeString, "date-time")
	case reflect.String:
		typ(openapi3.TypeString)
	case reflect.Bool:
		typ(openapi3.TypeBoolean, "")
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint8, reflect.Uint16:
		typ(openapi3.TypeInteger, "", "int32")
	case reflect.Int, reflect.Uint32:
		typ(openapi3.TypeInteger, "", "int64")
	case reflect.Int64, reflect.Uint64, reflect.Uint:
		// A client generator makes a 32-bit integer of one without format.
		typ(openapi3.TypeInteger, "int64")
	case reflect.Float32:
		typ(openapi3.TypeNumber, "", "float")
	case reflect.Float64:
		typ(openapi3.TypeNumber, "", "double")
	case reflect.Slice:
		typ(openapi3.TypeArray)
		if s.Items == nil {
			t.Errorf("schema %s: an array without items", where)
			return
		}
		checkType(t, where+"[]", rt.Elem(), s.Items)
	case reflect.Map:
		// JSON object keys are strings; the values' schema is
		// additionalProperties.
		typ(openapi3.TypeObject)
		if rt.Key().Kind() != reflect.String || s.AdditionalProperties.Schema == nil {
			t.Errorf("schema %s: a map needs string keys and an additionalProperties schema", where)
			return
		}
		checkType(t, where+"{}", rt.Elem(), s.AdditionalProperties.Schema)
	default:
		t.Errorf("schema %s: this test has no rule for Go type %v", where, rt)
	}
}

// exportedStructs are the names of the exported struct types that package
// api declares (outside tests).
func exportedStructs(t *testing.T) []string {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	fset := token.NewFileSet()
	for _, fn := range files {
		if strings.HasSuffix(fn, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, fn, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, sp := range g.Specs {
				ts := sp.(*ast.TypeSpec)
				if _, ok := ts.Type.(*ast.StructType); ok && ts.Name.IsExported() {
					names = append(names, ts.Name.Name)
				}
			}
		}
	}
	return names
}
