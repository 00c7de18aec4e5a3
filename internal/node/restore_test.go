package node

import (
	"reflect"
	"testing"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/vmmapi"
)

// TestRestoredDisks checks the definition's disks made from a restored
// VMM's list.
func TestRestoredDisks(t *testing.T) {
	vol := api.DiskSpec{Path: "/pool/v1.qcow2", Pool: "p", Volume: "v1", Format: "qcow2"}
	boot := api.DiskSpec{Path: "/img/boot.raw"}
	for _, tc := range []struct {
		name string
		spec []api.DiskSpec
		have []vmmapi.Disk
		want []api.DiskSpec
	}{
		{"same", []api.DiskSpec{boot, vol}, []vmmapi.Disk{{Path: boot.Path}, {Path: vol.Path, Hotplugged: true}}, []api.DiskSpec{boot, vol}},
		{"hot-plugged disk back", []api.DiskSpec{boot}, []vmmapi.Disk{{Path: boot.Path}, {Path: "/img/hot.raw", ReadOnly: true, Format: "raw", Hotplugged: true}},
			[]api.DiskSpec{boot, {Path: "/img/hot.raw", ReadOnly: true, Format: "raw"}}},
		{"attached after the snapshot", []api.DiskSpec{boot, vol}, []vmmapi.Disk{{Path: boot.Path}}, []api.DiskSpec{boot}},
		{"VMM order wins", []api.DiskSpec{vol, boot}, []vmmapi.Disk{{Path: boot.Path}, {Path: vol.Path}}, []api.DiskSpec{boot, vol}},
		{"being ejected", []api.DiskSpec{boot}, []vmmapi.Disk{{Path: boot.Path}, {Path: vol.Path, State: "detaching"}}, []api.DiskSpec{boot}},
		{"no disks", nil, nil, []api.DiskSpec{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := restoredDisks(tc.spec, tc.have); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
