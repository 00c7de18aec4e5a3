package vm

import "testing"

// TestPIIX4SoftOff: OVMF's shutdown (IoBitFieldWrite16 then IoOr16 of
// PM1a_CNT) powers off only on SLP_EN with SLP_TYP 0, however it is
// written.
func TestPIIX4SoftOff(t *testing.T) {
	for _, tc := range []struct {
		name   string
		offset uint64
		data   []byte
		want   bool
	}{
		{"ovmf: SLP_TYP cleared, SLP_EN not yet", 0, []byte{0x01, 0x00}, false},
		{"ovmf: SLP_EN with SLP_TYP 0", 0, []byte{0x01, 0x20}, true},
		{"high byte alone", 1, []byte{0x20}, true},
		{"SLP_TYP 5 is not PIIX4's soft off", 0, []byte{0x00, 0x20 | 5<<2}, false},
		{"SLP_TYP 1 (S3)", 0, []byte{0x00, 0x20 | 1<<2}, false},
		{"low byte alone", 0, []byte{0xFF}, false},
		{"past the register", 2, []byte{0x20}, false},
		{"empty", 1, nil, false},
	} {
		if got := piix4SoftOff(tc.offset, tc.data); got != tc.want {
			t.Errorf("%s: piix4SoftOff(%d, %x) = %v, want %v", tc.name, tc.offset, tc.data, got, tc.want)
		}
	}
}
