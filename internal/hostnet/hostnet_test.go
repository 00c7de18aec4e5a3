package hostnet

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/govisor/govisor/internal/hostnet/hostnettest"
	"github.com/govisor/govisor/internal/virtio/netdev"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"br0", true},
		{"gv0123456789ab", true},
		{"exactly15chars_", true},
		{"sixteen_chars_ab", false},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"a:b", false},
		{"tap%d", false},
		{"a b", false},
		{"a\x00", false},
	} {
		err := ValidName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrName) {
			t.Errorf("ValidName(%q) = %v, want ErrName", tc.name, err)
		}
	}
}

// dummy makes a device that is neither a bridge nor a TAP (a veth pair:
// the dummy driver is not everywhere).
func dummy(t *testing.T, name string) {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = name
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: name + "p"}); err != nil {
		t.Fatal(err)
	}
}

func TestBridge(t *testing.T) {
	if !hostnettest.Enter(t) {
		return
	}
	addr := netip.MustParsePrefix("169.254.10.1/16")
	created, err := EnsureBridge(Bridge{Name: "gvbr0", Addr: addr, Alias: "govisor:test"})
	if err != nil || !created {
		t.Fatalf("EnsureBridge = %v, %v; want created", created, err)
	}
	l, err := Get("gvbr0")
	if err != nil {
		t.Fatal(err)
	}
	if l.Kind != "bridge" || !l.Up || l.Alias != "govisor:test" || !slices.Contains(l.Addrs, addr) {
		t.Fatalf("bridge is %+v", l)
	}
	dummy(t, "gvdummy0")
	for _, tc := range []struct {
		what    string
		b       Bridge
		created bool
		want    error
	}{
		{"same settings again", Bridge{Name: "gvbr0", Addr: addr, Alias: "govisor:test"}, false, nil},
		{"no address asked", Bridge{Name: "gvbr0"}, false, nil},
		{"another address", Bridge{Name: "gvbr0", Addr: netip.MustParsePrefix("169.254.20.1/16")}, false, ErrConflict},
		{"not a bridge", Bridge{Name: "gvdummy0"}, false, ErrConflict},
		{"bad name", Bridge{Name: "much-too-long-name"}, false, ErrName},
		{"second bridge", Bridge{Name: "gvbr1"}, true, nil},
	} {
		created, err := EnsureBridge(tc.b)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) || created != tc.created {
			t.Errorf("%s: EnsureBridge = %v, %v; want %v, %v", tc.what, created, err, tc.created, tc.want)
		}
	}
	// An existing bridge keeps its own alias: the caller did not make it.
	if l, _ := Get("gvbr1"); l.Alias != "" {
		t.Errorf("gvbr1 alias %q", l.Alias)
	}
	ls, err := Links("govisor:")
	if err != nil || len(ls) != 1 || ls[0].Name != "gvbr0" {
		t.Errorf("Links(govisor:) = %+v, %v", ls, err)
	}
	if err := DeleteBridge("gvdummy0"); !errors.Is(err, ErrConflict) {
		t.Errorf("DeleteBridge of a dummy = %v, want ErrConflict", err)
	}
	for range 2 {
		if err := DeleteBridge("gvbr0"); err != nil {
			t.Errorf("DeleteBridge = %v", err)
		}
	}
	if _, err := Get("gvbr0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: Get = %v, want ErrNotFound", err)
	}
}

func TestTAP(t *testing.T) {
	if !hostnettest.Enter(t) {
		return
	}
	for _, br := range []string{"gvbr0", "gvbr1"} {
		if _, err := EnsureBridge(Bridge{Name: br}); err != nil {
			t.Fatal(err)
		}
	}
	dummy(t, "gvdummy0")
	tap := TAP{Name: "gvtap0", Bridge: "gvbr0", Owner: -1, Group: -1, Alias: "govisor:vm:a:0"}
	created, err := EnsureTAP(tap)
	if err != nil || !created {
		t.Fatalf("EnsureTAP = %v, %v; want created", created, err)
	}
	l, err := Get("gvtap0")
	if err != nil {
		t.Fatal(err)
	}
	if l.TAP == nil || !l.TAP.TAP || !l.TAP.VnetHdr || !l.TAP.NoPI || l.TAP.MultiQueue || !l.TAP.Persistent {
		t.Fatalf("TAP info %+v", l.TAP)
	}
	if l.Master != "gvbr0" || !l.Up || l.Alias != tap.Alias {
		t.Fatalf("TAP is %+v", l)
	}
	// The VMM attaches to it the way it attaches to any TAP, and the
	// device outlives the VMM's descriptor.
	vmm, err := netdev.OpenTAP("gvtap0")
	if err != nil {
		t.Fatalf("the VMM cannot attach: %v", err)
	}
	vmm.Close()
	owned := TAP{Name: "gvtap1", Owner: 4242, Group: 4243}
	if _, err := EnsureTAP(owned); err != nil {
		t.Fatal(err)
	}
	if l, _ := Get("gvtap1"); l.TAP == nil || l.TAP.Owner != 4242 || l.TAP.Group != 4243 || l.Master != "" {
		t.Errorf("owned TAP is %+v %+v", l, l.TAP)
	}
	for _, tc := range []struct {
		what string
		tap  TAP
		want error
	}{
		{"same settings again", tap, nil},
		{"no bridge asked", TAP{Name: "gvtap0", Owner: -1, Group: -1}, nil},
		{"another bridge", TAP{Name: "gvtap0", Bridge: "gvbr1", Owner: -1, Group: -1}, ErrConflict},
		{"another owner", TAP{Name: "gvtap1", Owner: 1, Group: 4243}, ErrConflict},
		{"another group", TAP{Name: "gvtap1", Owner: 4242, Group: 1}, ErrConflict},
		{"not a TAP", TAP{Name: "gvdummy0", Owner: -1, Group: -1}, ErrConflict},
		{"bridge is not a bridge", TAP{Name: "gvtap2", Bridge: "gvdummy0", Owner: -1, Group: -1}, ErrConflict},
		{"bridge missing", TAP{Name: "gvtap2", Bridge: "gvnone", Owner: -1, Group: -1}, ErrNotFound},
		{"bad name", TAP{Name: "tap%d", Owner: -1, Group: -1}, ErrName},
	} {
		created, err := EnsureTAP(tc.tap)
		if created || !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: EnsureTAP = %v, %v; want not created, %v", tc.what, created, err, tc.want)
		}
	}
	// A failed ensure leaves nothing half-made behind.
	if _, err := Get("gvtap2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("gvtap2 after failed ensures: %v", err)
	}
	if err := SetUp("gvtap0", false); err != nil {
		t.Fatal(err)
	}
	if l, _ := Get("gvtap0"); l.Up {
		t.Error("gvtap0 still up after SetUp(false)")
	}
	if err := DeleteTAP("gvdummy0"); !errors.Is(err, ErrConflict) {
		t.Errorf("DeleteTAP of a dummy = %v, want ErrConflict", err)
	}
	for range 2 {
		if err := DeleteTAP("gvtap0"); err != nil {
			t.Errorf("DeleteTAP = %v", err)
		}
	}
	if _, err := Get("gvtap0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: Get = %v", err)
	}
}
