package netdev

import "testing"

// TestOffloads checks the TUNSETOFFLOAD bits for each set of negotiated
// guest offloads: the kernel must never hand the guest a partial
// checksum, a GSO packet or an ECN-marked GSO packet it did not accept
// (5.1.6.4).
func TestOffloads(t *testing.T) {
	tso := uint64(FeatureGuestCsum | FeatureGuestTSO4 | FeatureGuestTSO6)
	tests := []struct {
		name     string
		features uint64
		want     int
	}{
		{"none", 0, 0},
		{"checksum only", FeatureGuestCsum, TUNOffloadCsum},
		{"TSO without GUEST_CSUM", FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureGuestECN, 0},
		{"TSO4", FeatureGuestCsum | FeatureGuestTSO4, TUNOffloadCsum | TUNOffloadTSO4},
		{"TSO4 and TSO6", tso, TUNOffloadCsum | TUNOffloadTSO4 | TUNOffloadTSO6},
		{"TSO and ECN", tso | FeatureGuestECN, TUNOffloadCsum | TUNOffloadTSO4 | TUNOffloadTSO6 | TUNOffloadTSOECN},
		{"ECN without TSO", FeatureGuestCsum | FeatureGuestECN, TUNOffloadCsum},
		{"host offloads only", FeatureCsum | FeatureHostTSO4 | FeatureHostTSO6 | FeatureHostECN, 0},
	}
	for _, tt := range tests {
		if got := offloads(tt.features); got != tt.want {
			t.Errorf("%s: offloads(%#x) = %#x, want %#x", tt.name, tt.features, got, tt.want)
		}
	}
}

// TestValidTx checks which transmit headers pass for which negotiated
// host offloads (5.1.6.2.1).
func TestValidTx(t *testing.T) {
	all := uint64(FeatureCsum | FeatureHostTSO4 | FeatureHostTSO6 | FeatureHostECN)
	csum := Header{Flags: HdrFNeedsCsum, CsumStart: 34, CsumOffset: 16}
	tso4 := Header{Flags: HdrFNeedsCsum, GSOType: GSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	tso6 := Header{Flags: HdrFNeedsCsum, GSOType: GSOTCPv6, HdrLen: 86, GSOSize: 1428, CsumStart: 54, CsumOffset: 16}
	with := func(h Header, f func(*Header)) Header { f(&h); return h }
	ecn := func(h *Header) { h.GSOType |= GSOECN }
	tests := []struct {
		name     string
		h        Header
		features uint64
		want     bool
	}{
		{"no offload", Header{}, 0, true},
		{"data valid", Header{Flags: HdrFDataValid}, 0, true},
		{"partial checksum", csum, all, true},
		{"partial checksum without CSUM", csum, all &^ FeatureCsum, false},
		{"checksum field past the frame", with(csum, func(h *Header) { h.CsumStart = 9000 }), all, false},
		{"TSO4", tso4, all, true},
		{"TSO6", tso6, all, true},
		{"TSO4 not negotiated", tso4, all &^ FeatureHostTSO4, false},
		{"TSO6 not negotiated", tso6, all &^ FeatureHostTSO6, false},
		{"TSO without partial checksum", with(tso4, func(h *Header) { h.Flags = 0 }), all, false},
		{"TSO with zero segment size", with(tso4, func(h *Header) { h.GSOSize = 0 }), all, false},
		{"TSO4 with ECN", with(tso4, ecn), all, true},
		{"TSO6 with ECN", with(tso6, ecn), all, true},
		{"ECN without HOST_ECN", with(tso4, ecn), all &^ FeatureHostECN, false},
		{"ECN without segmentation", Header{GSOType: GSOECN}, all, false},
		{"UDP fragmentation", with(tso4, func(h *Header) { h.GSOType = GSOUDP }), all, false},
		{"unknown flag", Header{Flags: 4}, all, false},
	}
	for _, tt := range tests {
		if got := validTx(tt.h, tt.features, 9000); got != tt.want {
			t.Errorf("%s: validTx(%+v, %#x) = %v, want %v", tt.name, tt.h, tt.features, got, tt.want)
		}
	}
}

// TestFixRx checks how a header from the backend is translated for the
// driver, or the frame dropped, for each set of negotiated guest
// offloads (5.1.6.4.1).
func TestFixRx(t *testing.T) {
	all := uint64(FeatureGuestCsum | FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureGuestECN)
	gso4 := Header{Flags: HdrFNeedsCsum, GSOType: GSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	gso6ecn := Header{Flags: HdrFNeedsCsum, GSOType: GSOTCPv6 | GSOECN, HdrLen: 86, GSOSize: 1428, CsumStart: 54, CsumOffset: 16}
	tests := []struct {
		name     string
		in       Header
		features uint64
		ok       bool
		out      Header // the header the driver sees, if ok
	}{
		{"plain", Header{}, 0, true, Header{}},
		{"data valid with GUEST_CSUM", Header{Flags: HdrFDataValid}, all, true, Header{Flags: HdrFDataValid}},
		{"data valid cleared without GUEST_CSUM", Header{Flags: HdrFDataValid}, 0, true, Header{}},
		{"partial checksum without GUEST_CSUM", Header{Flags: HdrFNeedsCsum, CsumStart: 34, CsumOffset: 16}, 0, false, Header{}},
		{"TSO4 kept", gso4, all, true, gso4},
		{"TSO4 not negotiated", gso4, all &^ FeatureGuestTSO4, false, Header{}},
		{"TSO6 with ECN kept", gso6ecn, all, true, gso6ecn},
		{"ECN without GUEST_ECN", gso6ecn, all &^ FeatureGuestECN, false, Header{}},
		{"ECN without segmentation", Header{GSOType: GSOECN}, all, false, Header{}},
		{"UDP fragmentation", Header{Flags: HdrFNeedsCsum, GSOType: GSOUDP, GSOSize: 1000}, all, false, Header{}},
	}
	for _, tt := range tests {
		b := make([]byte, HeaderSize)
		tt.in.Put(b)
		ok := fixRx(b, tt.features)
		if ok != tt.ok {
			t.Errorf("%s: fixRx = %v, want %v", tt.name, ok, tt.ok)
			continue
		}
		if got := ParseHeader(b); ok && got != tt.out {
			t.Errorf("%s: driver sees %+v, want %+v", tt.name, got, tt.out)
		}
	}
}
