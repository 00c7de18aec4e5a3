package uart8250

// State is the guest-visible state of a UART, for snapshots and migration.
type State struct {
	IER, FCR, LCR, MCR, LSR, MSR, SCR, DLL, DLM byte
	// THREPending is the latched transmitter-holding-register-empty interrupt.
	THREPending bool
	// Rx holds the received bytes the guest has not read yet, oldest first.
	Rx []byte
}

// SaveState returns a copy of the UART's registers and receive buffer.
func (u *UART) SaveState() State {
	u.mu.Lock()
	defer u.mu.Unlock()
	return State{
		IER: u.ier, FCR: u.fcr, LCR: u.lcr, MCR: u.mcr, LSR: u.lsr, MSR: u.msr,
		SCR: u.scr, DLL: u.dll, DLM: u.dlm,
		THREPending: u.threPending,
		Rx:          append([]byte(nil), u.rx...),
	}
}

// RestoreState loads s (which may come from an untrusted snapshot: reserved
// bits are masked and excess receive bytes dropped) and drives the
// interrupt line to the level the restored registers imply.
func (u *UART) RestoreState(s State) {
	u.mu.Lock()
	u.ier = s.IER & ierMask
	u.fcr = s.FCR &^ (fcrClearRx | fcrClearTx)
	if u.fcr&fcrEnable == 0 {
		u.fcr = 0
	}
	u.lcr = s.LCR
	u.mcr = s.MCR & mcrMask
	u.lsr = s.LSR&lsrError | lsrTHRE | lsrTEMT
	u.msr = s.MSR
	u.scr, u.dll, u.dlm = s.SCR, s.DLL, s.DLM
	u.threPending = s.THREPending
	rx := s.Rx
	if len(rx) > RxBufferSize {
		rx = rx[:RxBufferSize]
	}
	u.rx = append(u.rx[:0], rx...)
	if len(u.rx) < RxBufferSize {
		u.signalSpace()
	}
	u.unlockAndUpdate(nil)
}
