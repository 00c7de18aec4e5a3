package api

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestOpenAPIMatchesTypes keeps openapi.yaml and the Go types in step: every
// schema lists exactly the JSON fields of its Go type.
func TestOpenAPIMatchesTypes(t *testing.T) {
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	types := map[string]any{"UsageSample": UsageSample{}, "UsageReport": UsageReport{}, "VMSpec": VMSpec{}, "VMStatus": VMStatus{}, "VM": VM{}, "VMList": VMList{}, "Host": Host{}, "HostList": HostList{}, "Event": Event{}, "Error": Error{},
		"SnapshotRequest": SnapshotRequest{}, "Snapshot": Snapshot{}, "SnapshotList": SnapshotList{}, "RestoreRequest": RestoreRequest{},
		"MigrateRequest": MigrateRequest{}, "MigrationStatus": MigrationStatus{}, "IncomingRequest": IncomingRequest{}, "Incoming": Incoming{},
		"DiskSpec": DiskSpec{}, "NICSpec": NICSpec{}, "Network": Network{}, "NetworkList": NetworkList{},
		"Pool": Pool{}, "PoolList": PoolList{}, "Volume": Volume{}, "VolumeList": VolumeList{}, "VolumeCreate": VolumeCreate{}}
	for name, v := range types {
		var want []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			want = append(want, tag)
		}
		var got []string
		for p := range doc.Components.Schemas[name].Properties {
			got = append(got, p)
		}
		sort.Strings(want)
		sort.Strings(got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("schema %s: properties %v, Go type %s has %v", name, got, rt.Name(), want)
		}
	}
	for _, p := range []string{"/v1/usage", "/v1/vms", "/v1/vms/{name}", "/v1/vms/{name}/{action}", "/v1/vms/{name}/console",
		"/v1/vms/{name}/pause", "/v1/vms/{name}/resume", "/v1/vms/{name}/reboot", "/v1/vms/{name}/snapshot", "/v1/vms/{name}/snapshots",
		"/v1/vms/{name}/restore", "/v1/vms/{name}/migrate", "/v1/vms/{name}/incoming", "/v1/events", "/v1/host", "/v1/hosts", "/metrics",
		"/v1/networks", "/v1/networks/{name}", "/v1/pools", "/v1/pools/{name}", "/v1/pools/{name}/volumes", "/v1/pools/{name}/volumes/{volume}"} {
		if doc.Paths[p] == nil {
			t.Errorf("openapi.yaml lacks %s", p)
		}
	}
}
