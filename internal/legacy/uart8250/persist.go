package uart8250

import "github.com/govisor/govisor/internal/snapshot"

// maxStateRx bounds a decoded receive buffer (generous: the UART keeps at
// most RxBufferSize).
const maxStateRx = 1 << 16

// Encode appends the state's binary encoding (snapshot.Encoder).
func (u *State) Encode(e *snapshot.Encoder) {
	e.Raw([]byte{u.IER, u.FCR, u.LCR, u.MCR, u.LSR, u.MSR, u.SCR, u.DLL, u.DLM})
	e.Bool(u.THREPending)
	e.Blob(u.Rx)
}

// Decode reads what Encode wrote.
func (u *State) Decode(d *snapshot.Decoder) error {
	for _, p := range [...]*uint8{&u.IER, &u.FCR, &u.LCR, &u.MCR, &u.LSR, &u.MSR, &u.SCR, &u.DLL, &u.DLM} {
		*p = d.U8()
	}
	u.THREPending = d.Bool()
	u.Rx = d.Blob("UART.Rx", maxStateRx)
	return d.Err()
}
