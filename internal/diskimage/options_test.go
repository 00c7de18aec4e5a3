package diskimage_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

func TestApplyCreateOptions(t *testing.T) {
	type opts struct{ fixed, azure bool }
	apply := func(o diskimage.CreateOptions) (opts, error) {
		var got opts
		err := diskimage.ApplyCreateOptions("fmt", o, diskimage.FixedOption(&got.fixed), diskimage.SwitchOption("azure", &got.azure))
		return got, err
	}
	for _, c := range []struct {
		in   map[string]string
		want opts
	}{
		{nil, opts{}},
		{map[string]string{"subformat": "fixed"}, opts{fixed: true}},
		{map[string]string{"subformat": "dynamic", "azure": ""}, opts{azure: true}},
		{map[string]string{"azure": "on"}, opts{azure: true}},
		{map[string]string{"azure": "true"}, opts{azure: true}},
		{map[string]string{"azure": "off", "subformat": "fixed"}, opts{fixed: true}},
		{map[string]string{"azure": "false"}, opts{}},
	} {
		got, err := apply(diskimage.CreateOptions{Options: c.in})
		if err != nil || got != c.want {
			t.Errorf("%v: %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct {
		in   diskimage.CreateOptions
		want string
	}{
		{diskimage.CreateOptions{BackingFile: "base.img"}, "fmt: " + diskimage.ErrUnsupported.Error() + ": backing files"},
		{diskimage.CreateOptions{Options: map[string]string{"subformat": "sparse"}}, "option subformat=sparse (want subformat=dynamic|fixed, azure=on|off)"},
		{diskimage.CreateOptions{Options: map[string]string{"azure": "maybe"}}, "option azure=maybe"},
		// Of two wrong options the first by name is named, every time.
		{diskimage.CreateOptions{Options: map[string]string{"zzz": "1", "cluster_size": "1"}}, "option cluster_size=1"},
	} {
		for range 5 {
			_, err := apply(c.in)
			if !errors.Is(err, diskimage.ErrUnsupported) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%+v: %v, want ErrUnsupported saying %q", c.in, err, c.want)
			}
		}
	}
}
