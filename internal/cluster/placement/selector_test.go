package placement

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseSelector(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []Term
		wantErr string
	}{
		{in: "zone=a", want: []Term{{"zone", OpEqual, "a"}}},
		{in: " zone = a , !gpu,ssd, rack!=r1 ", want: []Term{{"zone", OpEqual, "a"}, {"gpu", OpNotExists, ""}, {"ssd", OpExists, ""}, {"rack", OpNotEqual, "r1"}}},
		{in: "topology.kubernetes.io/zone=eu-1_a", want: []Term{{"topology.kubernetes.io/zone", OpEqual, "eu-1_a"}}},
		{in: "", wantErr: `placement: empty selector: write comma-separated terms such as zone=a, rack!=r1, ssd, !gpu`},
		{in: "zone=a,", wantErr: `placement: selector "zone=a,": empty term: write comma-separated`},
		{in: "zone==a", wantErr: `placement: selector "zone==a": term "zone==a": value "=a" has '=', which is not a letter, a digit or one of "._-"`},
		{in: "zone=", wantErr: `term "zone=": empty value`},
		{in: "=a", wantErr: `term "=a": empty key`},
		{in: "!a=b", wantErr: `key "!a" has '!'`},
		{in: "a b", wantErr: `key "a b" has ' '`},
		{in: "a=b/c", wantErr: `value "b/c" has '/'`},
		{in: strings.Repeat("k", 254), wantErr: "key of 254 characters (at most 253)"},
	} {
		sel, err := ParseSelector(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseSelector(%q) = %v, want error containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(sel.Terms, tc.want) {
			t.Errorf("ParseSelector(%q) = %+v, %v; want %+v", tc.in, sel.Terms, err, tc.want)
		}
	}
}

func TestSelectorMatches(t *testing.T) {
	labels := map[string]string{"zone": "a", "ssd": "true", "rack": "r1"}
	for _, tc := range []struct {
		sel        string
		want, none bool // on labels, on no labels
	}{
		{"zone=a", true, false}, {"zone=b", false, false}, {"zone!=b", true, true}, {"zone!=a", false, true},
		{"gpu!=a100", true, true}, {"ssd", true, false}, {"gpu", false, false}, {"!gpu", true, true},
		{"!ssd", false, true}, {"zone=a,ssd,!gpu", true, false}, {"zone=a,gpu", false, false},
	} {
		sel, err := ParseSelector(tc.sel)
		if err != nil {
			t.Fatal(err)
		}
		if got := sel.Matches(labels); got != tc.want {
			t.Errorf("%q matches %v = %v, want %v", tc.sel, labels, got, tc.want)
		}
		if got := sel.Matches(nil); got != tc.none {
			t.Errorf("%q matches no labels = %v, want %v", tc.sel, got, tc.none)
		}
	}
}

func TestParseHostRule(t *testing.T) {
	for _, tc := range []struct {
		in, want, wantErr string
	}{
		{in: "must zone=a", want: "must zone=a"},
		{in: "  must-not   gpu ", want: "must-not gpu"},
		{in: "should ssd,rack!=r1", want: "should ssd,rack!=r1"},
		{in: "should-not rack=r1", want: "should-not rack=r1"},
		{in: "mst zone=a", wantErr: `placement: host rule "mst zone=a": kind "mst": write must, must-not, should or should-not, then a label selector ("must zone=a")`},
		{in: "must", wantErr: `placement: host rule "must": placement: empty selector`},
		{in: "must zone=a=b", wantErr: `value "a=b" has '='`},
	} {
		r, err := ParseHostRule(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseHostRule(%q) = %v, want error containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || r.String() != tc.want {
			t.Errorf("ParseHostRule(%q) = %q, %v; want %q", tc.in, r.String(), err, tc.want)
		}
	}
}

// FuzzParseSelector: no input panics, and a parsed selector prints to a
// text that parses to the same terms.
func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"zone=a", "!gpu,ssd", "rack!=r1, zone = b", "a=b=c", "!", "!=", ",", "a!=", "é=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			return
		}
		again, err := ParseSelector(sel.String())
		if err != nil || !reflect.DeepEqual(again, sel) {
			t.Fatalf("%q -> %q -> %+v, %v; want %+v", s, sel.String(), again, err, sel)
		}
		sel.Matches(map[string]string{"zone": "a"})
	})
}

// FuzzParseHostRule: no input panics, and a parsed rule prints to a text
// that parses to the same rule.
func FuzzParseHostRule(f *testing.F) {
	for _, s := range []string{"must zone=a", "should-not gpu", "must-not", "should  a,b", "x y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseHostRule(s)
		if err != nil {
			return
		}
		again, err := ParseHostRule(r.String())
		if err != nil || again != r {
			t.Fatalf("%q -> %q -> %+v, %v", s, r.String(), again, err)
		}
	})
}
