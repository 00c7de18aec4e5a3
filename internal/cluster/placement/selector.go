package placement

import (
	"fmt"
	"strings"
)

// Op is how a selector term tests a label.
type Op string

// Selector term operators.
const (
	OpExists    Op = ""   // "ssd": the host has the label, any value
	OpNotExists Op = "!"  // "!gpu": the host lacks the label
	OpEqual     Op = "="  // "zone=a"
	OpNotEqual  Op = "!=" // "rack!=r1": the label is absent or has another value
)

// Term is one test of a selector.
type Term struct {
	Key   string
	Op    Op
	Value string
}

// Selector is a label selector: terms that must all hold.
type Selector struct {
	Terms []Term
}

// selectorHelp is the fix every selector syntax error ends with.
const selectorHelp = "write comma-separated terms such as zone=a, rack!=r1, ssd, !gpu"

// maxLabelLen bounds a key or a value (Kubernetes' label limits).
const maxLabelLen = 253

// ParseSelector parses a label selector: comma-separated terms, each
// "key" (has the label), "!key" (lacks it), "key=value" or "key!=value".
// Keys are letters, digits and ". _ / -", values letters, digits and
// ". _ -".
func ParseSelector(s string) (Selector, error) {
	var sel Selector
	if strings.TrimSpace(s) == "" {
		return sel, fmt.Errorf("placement: empty selector: %s", selectorHelp)
	}
	for _, raw := range strings.Split(s, ",") {
		t, err := parseTerm(strings.TrimSpace(raw))
		if err != nil {
			return Selector{}, fmt.Errorf("placement: selector %q: %w: %s", s, err, selectorHelp)
		}
		sel.Terms = append(sel.Terms, t)
	}
	return sel, nil
}

// parseTerm parses one selector term.
func parseTerm(s string) (Term, error) {
	var t Term
	switch {
	case s == "":
		return t, fmt.Errorf("empty term")
	case strings.HasPrefix(s, "!") && !strings.Contains(s, "="):
		t.Op, t.Key = OpNotExists, s[1:]
	case strings.Contains(s, "!="):
		t.Op = OpNotEqual
		t.Key, t.Value, _ = strings.Cut(s, "!=")
	case strings.Contains(s, "="):
		t.Op = OpEqual
		t.Key, t.Value, _ = strings.Cut(s, "=")
	default:
		t.Op, t.Key = OpExists, s
	}
	t.Key, t.Value = strings.TrimSpace(t.Key), strings.TrimSpace(t.Value)
	if err := checkLabel(t.Key, "key", "._/-"); err != nil {
		return t, fmt.Errorf("term %q: %w", s, err)
	}
	if t.Op == OpEqual || t.Op == OpNotEqual {
		if err := checkLabel(t.Value, "value", "._-"); err != nil {
			return t, fmt.Errorf("term %q: %w", s, err)
		}
	}
	return t, nil
}

// checkLabel checks a key or a value: 1 to maxLabelLen letters, digits or
// extra characters.
func checkLabel(s, what, extra string) error {
	if s == "" {
		return fmt.Errorf("empty %s", what)
	}
	if len(s) > maxLabelLen {
		return fmt.Errorf("%s of %d characters (at most %d)", what, len(s), maxLabelLen)
	}
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(extra, c)
		if !ok {
			return fmt.Errorf("%s %q has %q, which is not a letter, a digit or one of %q", what, s, c, extra)
		}
	}
	return nil
}

// Matches says whether labels satisfy every term.
func (sel Selector) Matches(labels map[string]string) bool {
	for _, t := range sel.Terms {
		v, ok := labels[t.Key]
		switch t.Op {
		case OpExists:
			if !ok {
				return false
			}
		case OpNotExists:
			if ok {
				return false
			}
		case OpEqual:
			if !ok || v != t.Value {
				return false
			}
		case OpNotEqual:
			if ok && v == t.Value {
				return false
			}
		}
	}
	return true
}

// String is the selector in the syntax ParseSelector reads.
func (sel Selector) String() string {
	var b strings.Builder
	for i, t := range sel.Terms {
		if i > 0 {
			b.WriteByte(',')
		}
		switch t.Op {
		case OpNotExists:
			b.WriteString("!" + t.Key)
		case OpEqual, OpNotEqual:
			b.WriteString(t.Key + string(t.Op) + t.Value)
		default:
			b.WriteString(t.Key)
		}
	}
	return b.String()
}

// ParseHostRule parses a VM-host rule written "KIND SELECTOR", KIND one of
// must, must-not, should, should-not: "must zone=a", "must-not gpu",
// "should ssd,rack!=r1".
func ParseHostRule(s string) (HostRule, error) {
	kind, sel, _ := strings.Cut(strings.TrimSpace(s), " ")
	r := HostRule{Kind: RuleKind(kind), Selector: strings.TrimSpace(sel)}
	if !r.Kind.valid() {
		return HostRule{}, fmt.Errorf("placement: host rule %q: kind %q: write must, must-not, should or should-not, then a label selector (\"must zone=a\")", s, kind)
	}
	if _, err := ParseSelector(r.Selector); err != nil {
		return HostRule{}, fmt.Errorf("placement: host rule %q: %w", s, err)
	}
	return r, nil
}

// String is the rule in the syntax ParseHostRule reads.
func (r HostRule) String() string { return string(r.Kind) + " " + r.Selector }

// valid says whether k is one of the four rule kinds.
func (k RuleKind) valid() bool {
	return k == Must || k == MustNot || k == Should || k == ShouldNot
}
