package diskimage

import (
	"fmt"
	"slices"
	"strings"
)

// CreateOption is one key of CreateOptions.Options a driver's Create
// takes (`govisor image create -o key=value`).
type CreateOption struct {
	// Key is the option's name; Want names its values for an error
	// ("subformat=dynamic|fixed").
	Key, Want string
	// Set applies a value, false when it refuses it.
	Set func(v string) bool
}

// ApplyCreateOptions applies opts.Options with the options a format
// knows, in key order, refusing with ErrUnsupported a key it does not
// know, a value its option refuses, and a backing file: for the formats
// whose differencing images govisor reads but does not create.
func ApplyCreateOptions(format string, opts CreateOptions, known ...CreateOption) error {
	if opts.BackingFile != "" {
		return fmt.Errorf("%s: %w: backing files (differencing images)", format, ErrUnsupported)
	}
	keys := make([]string, 0, len(opts.Options))
	for k := range opts.Options {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same error for the same options
	for _, k := range keys {
		v := opts.Options[k]
		i := slices.IndexFunc(known, func(o CreateOption) bool { return o.Key == k })
		if i < 0 || !known[i].Set(v) {
			want := make([]string, len(known))
			for j, o := range known {
				want[j] = o.Want
			}
			return fmt.Errorf("%s: %w: option %s=%s (want %s)", format, ErrUnsupported, k, v, strings.Join(want, ", "))
		}
	}
	return nil
}

// FixedOption is subformat=dynamic|fixed, as vhd, vhdx and vdi take it
// (qemu-img's names): fixed sets *fixed.
func FixedOption(fixed *bool) CreateOption {
	return CreateOption{Key: "subformat", Want: "subformat=dynamic|fixed", Set: func(v string) bool {
		*fixed = *fixed || v == "fixed"
		return v == "fixed" || v == "dynamic"
	}}
}

// SwitchOption is a QEMU-style on|off option: on, true or no value set
// *p; off and false leave it as it is (off unless another option set it).
func SwitchOption(key string, p *bool) CreateOption {
	return CreateOption{Key: key, Want: key + "=on|off", Set: func(v string) bool {
		switch v {
		case "on", "true", "":
			*p = true
		case "off", "false":
		default:
			return false
		}
		return true
	}}
}
