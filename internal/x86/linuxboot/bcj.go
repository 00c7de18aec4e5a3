package linuxboot

import "encoding/binary"

// bcjX86Decode undoes the x86 branch/call/jump filter (xz filter ID 0x04,
// start offset 0) in place. The encoder turned the relative 32-bit targets
// of E8 (CALL) and E9 (JMP) instructions into absolute ones so that LZMA
// finds more repeats; decoding subtracts the position again. A small history
// mask of recent E8/E9 bytes decides which candidates were converted, exactly
// as the encoder did, so the transform is only reproducible when the whole
// buffer is processed from offset 0 in order.
func bcjX86Decode(buf []byte) {
	if len(buf) < 5 {
		return
	}
	// Which history patterns allow a conversion, and which byte of the
	// target to re-check for each (indexed by (mask>>1)&7).
	allowed := [8]bool{true, true, true, false, true, false, false, false}
	bitNum := [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
	msb := func(b byte) bool { return b == 0x00 || b == 0xff }

	var mask uint32
	prevPos := -5
	for i := 0; i <= len(buf)-5; {
		op := buf[i]
		if op != 0xe8 && op != 0xe9 {
			i++
			continue
		}
		if d := i - prevPos; d > 5 {
			mask = 0
		} else {
			for k := 0; k < d; k++ {
				mask = (mask & 0x77) << 1
			}
		}
		prevPos = i
		top := buf[i+4]
		if !(msb(top) && allowed[(mask>>1)&7] && mask>>1 < 0x10) {
			i++
			mask |= 1
			if msb(top) {
				mask |= 0x10
			}
			continue
		}
		src := binary.LittleEndian.Uint32(buf[i+1:])
		var dst uint32
		for {
			dst = src - uint32(i+5)
			if mask == 0 {
				break
			}
			n := bitNum[(mask>>1)&7]
			if !msb(byte(dst >> (24 - n*8))) {
				break
			}
			src = dst ^ (1<<(32-n*8) - 1)
		}
		// Keep 25 bits and sign-extend bit 24, as the encoder produced.
		dst &= 0x01ffffff
		dst |= -(dst & 0x01000000)
		binary.LittleEndian.PutUint32(buf[i+1:], dst)
		i += 5
		mask = 0
	}
}
