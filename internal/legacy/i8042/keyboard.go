package i8042

// Keyboard replies and commands (IBM PC/AT Technical Reference, "Keyboard
// commands" and "Commands to the system").
const (
	kbdACK    = 0xFA
	kbdBATOK  = 0xAA // basic assurance test passed, after a reset
	kbdResend = 0xFE
	kbdEcho   = 0xEE

	kbdSetLEDs      = 0xED
	kbdScanCodeSet  = 0xF0
	kbdIdentify     = 0xF2
	kbdTypematic    = 0xF3
	kbdEnable       = 0xF4
	kbdDisable      = 0xF5
	kbdDefaults     = 0xF6
	kbdResendLast   = 0xFE
	kbdReset        = 0xFF
	kbdMF2ID        = 0xAB // first identification byte of an MF2 keyboard
	kbdMF2ID2       = 0x83 // second, untranslated
	kbdMF2ID2Transl = 0x41 // second, as the controller's translation passes it on
)

// keyboard is the PS/2 keyboard on the controller's first port. It has no
// keys, so it never sends a scan code, but it answers the host's commands
// as a real one does. Firmware and kernels probe it at boot and wait for
// its answers with timeouts counted in polling rounds: with nothing
// answering, OVMF's PS/2 keyboard driver spent about 200 s of a nested
// TCG lab's UEFI boot (port reads and PM-timer polls, each an exit to the
// VMM) and some seconds on hardware, where QEMU's keyboard answers at once.
//
// Its state is not in State: the one thing it carries between two host
// writes is a reply in flight (at most two bytes after a command), and a
// guest whose command went unanswered across a restore sees what a real
// keyboard unplugged for a moment gives, a timeout it retries or reports.
type keyboard struct {
	param byte // command waiting for its parameter byte, 0 if none
	set   byte // scan code set, 1-3; 0 is the default, set 2
	last  byte // last byte sent, for Resend
}

// write takes a byte from the host and returns the keyboard's reply.
// translate says whether the controller translates what the keyboard sends
// to scan code set 1 (command byte bit 6), which changes the ID bytes.
func (k *keyboard) write(v byte, translate bool) []byte {
	var r []byte
	if p := k.param; p != 0 {
		k.param = 0
		r = []byte{kbdACK}
		if p == kbdScanCodeSet {
			switch {
			case v == 0:
				r = append(r, k.setID(translate))
			case v >= 1 && v <= 3:
				k.set = v
			}
		}
	} else {
		switch v {
		case kbdReset:
			*k = keyboard{}
			r = []byte{kbdACK, kbdBATOK}
		case kbdResendLast:
			r = []byte{k.last}
		case kbdEcho:
			r = []byte{kbdEcho}
		case kbdIdentify:
			id2 := byte(kbdMF2ID2)
			if translate {
				id2 = kbdMF2ID2Transl
			}
			r = []byte{kbdACK, kbdMF2ID, id2}
		case kbdSetLEDs, kbdTypematic, kbdScanCodeSet:
			k.param = v
			r = []byte{kbdACK}
		case kbdEnable, kbdDisable, kbdDefaults, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD:
			r = []byte{kbdACK}
		default:
			r = []byte{kbdResend}
		}
	}
	k.last = r[len(r)-1]
	return r
}

// setID is the reply to "get scan code set": the set number, or what the
// controller's translation turns it into.
func (k *keyboard) setID(translate bool) byte {
	set := k.set
	if set == 0 {
		set = 2
	}
	if !translate {
		return set
	}
	return [...]byte{0, 0x43, 0x41, 0x3F}[set]
}
