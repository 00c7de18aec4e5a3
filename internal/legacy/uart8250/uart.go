// Package uart8250 emulates a 16550A UART (the PC's COM port) as Linux's
// 8250 serial driver probes and drives it.
//
// Register behaviour follows the National Semiconductor PC16550D data sheet
// (sections 8.4-8.6: register summary, IIR priorities, FCR, MCR loopback).
// Transmission is instantaneous: a byte written to THR goes to the host
// writer at once, so THR and the transmitter are always empty (LSR THRE and
// TEMT always set).
package uart8250

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// COM1Base is the port-I/O base address of COM1 on a PC.
const COM1Base = 0x3F8

// COM1IRQ is the ISA interrupt line of COM1.
const COM1IRQ = 4

// Size is the number of port addresses the UART decodes.
const Size = 8

// RxBufferSize is how many received bytes the UART holds for the guest. It
// is larger than the 16-byte FIFO of a real 16550A so that a burst of host
// console input is not cut short; the trigger levels keep 16550A meaning.
const RxBufferSize = 64

// Register offsets (PC16550D table II).
const (
	regData = 0 // RBR (read), THR (write), DLL when DLAB=1
	regIER  = 1 // IER, DLM when DLAB=1
	regIIR  = 2 // IIR (read), FCR (write)
	regLCR  = 3
	regMCR  = 4
	regLSR  = 5
	regMSR  = 6
	regSCR  = 7
)

// IER bits.
const (
	ierRDA  = 0x01 // received data available
	ierTHRE = 0x02 // transmitter holding register empty
	ierRLS  = 0x04 // receiver line status
	ierMS   = 0x08 // modem status
	ierMask = 0x0F
)

// IIR interrupt identification codes, highest priority first.
const (
	iirNone    = 0x01
	iirRLS     = 0x06
	iirRDA     = 0x04
	iirTimeout = 0x0C
	iirTHRE    = 0x02
	iirMS      = 0x00
	iirFIFOs   = 0xC0
)

// FCR bits.
const (
	fcrEnable  = 0x01
	fcrClearRx = 0x02
	fcrClearTx = 0x04
)

// LCR, MCR, LSR and MSR bits.
const (
	lcrDLAB = 0x80

	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOut1 = 0x04
	mcrOut2 = 0x08
	mcrLoop = 0x10
	mcrMask = 0x1F

	lsrDR    = 0x01
	lsrOE    = 0x02
	lsrTHRE  = 0x20
	lsrTEMT  = 0x40
	lsrError = 0x1E // OE, PE, FE, BI: cleared by reading LSR

	msrDCTS  = 0x01
	msrDDSR  = 0x02
	msrTERI  = 0x04
	msrDDCD  = 0x08
	msrCTS   = 0x10
	msrDSR   = 0x20
	msrRI    = 0x40
	msrDCD   = 0x80
	msrDelta = 0x0F

	// msrIdle is what the modem lines read outside loopback: a host
	// console is always "connected" (carrier, data set ready, clear to send).
	msrIdle = msrDCD | msrDSR | msrCTS
)

// UART is an emulated 16550A. It implements iobus.Device at COM1Base (or any
// other base) with Size ports, and is safe for concurrent use.
type UART struct {
	mu sync.Mutex
	// Registers. iir is computed; threPending latches the THRE interrupt.
	ier, fcr, lcr, mcr, lsr, msr, scr, dll, dlm byte
	threPending                                 bool
	rx                                          []byte // received bytes, oldest first, len <= RxBufferSize
	level                                       bool   // last level passed to irq

	irqMu sync.Mutex // orders irq calls so the line ends at the latest level
	irq   func(level bool)

	outMu   sync.Mutex // orders writes to out without holding mu
	out     io.Writer
	outErrs uint64 // writes to out that failed (bytes lost)

	txBytes, rxBytes atomic.Uint64 // for Counters

	space chan struct{} // signalled when the guest frees receive space
}

// New returns a UART in its power-on state that writes transmitted bytes to
// out and reports its interrupt line level through irq (either may be nil).
func New(out io.Writer, irq func(level bool)) *UART {
	u := &UART{out: out, irq: irq, space: make(chan struct{}, 1), rx: make([]byte, 0, RxBufferSize)}
	u.reset()
	return u
}

// reset puts the registers in their master-reset state (PC16550D table IV),
// with a 9600 baud divisor as a BIOS would leave it.
func (u *UART) reset() {
	u.ier, u.fcr, u.lcr, u.mcr, u.scr = 0, 0, 0, 0, 0
	u.lsr = lsrTHRE | lsrTEMT
	u.msr = msrIdle
	u.dll, u.dlm = 12, 0
	u.threPending = false
	u.rx = u.rx[:0]
}

// Read implements iobus.Device. Wider accesses are split into byte accesses
// to consecutive registers, as the ISA bus does for an 8-bit device.
func (u *UART) Read(offset uint64, data []byte) {
	u.mu.Lock()
	freed := false
	for i := range data {
		off := offset + uint64(i)
		if off < offset || off >= Size {
			data[i] = 0xFF
			continue
		}
		var f bool
		data[i], f = u.readReg(off)
		freed = freed || f
	}
	if freed {
		u.signalSpace()
	}
	u.unlockAndUpdate(nil)
}

// Write implements iobus.Device; see Read for wide accesses.
func (u *UART) Write(offset uint64, data []byte) {
	u.mu.Lock()
	var tx []byte
	freed := false
	for i, v := range data {
		off := offset + uint64(i)
		if off < offset || off >= Size {
			continue
		}
		t, f := u.writeReg(off, v)
		if t {
			tx = append(tx, v)
		}
		freed = freed || f
	}
	if freed {
		u.signalSpace()
	}
	u.unlockAndUpdate(tx)
}

// readReg returns the register value and whether receive space was freed.
func (u *UART) readReg(off uint64) (byte, bool) {
	dlab := u.lcr&lcrDLAB != 0
	switch off {
	case regData:
		if dlab {
			return u.dll, false
		}
		if len(u.rx) == 0 {
			return 0, false
		}
		b := u.rx[0]
		copy(u.rx, u.rx[1:])
		u.rx = u.rx[:len(u.rx)-1]
		return b, true
	case regIER:
		if dlab {
			return u.dlm, false
		}
		return u.ier, false
	case regIIR:
		v := u.iir()
		// Reading IIR while THRE is the reported source acknowledges it
		// (PC16550D table IV, "Reading the IIR register (if source of
		// interrupt)").
		if v&0x0F == iirTHRE {
			u.threPending = false
		}
		return v, false
	case regLCR:
		return u.lcr, false
	case regMCR:
		return u.mcr, false
	case regLSR:
		v := u.lsrValue()
		u.lsr &^= lsrError
		return v, false
	case regMSR:
		v := u.msr
		u.msr &^= msrDelta
		return v, false
	default: // regSCR
		return u.scr, false
	}
}

// writeReg stores v and reports whether v is to be transmitted to the host
// and whether receive space was freed.
func (u *UART) writeReg(off uint64, v byte) (transmit, freed bool) {
	dlab := u.lcr&lcrDLAB != 0
	switch off {
	case regData:
		if dlab {
			u.dll = v
			return false, false
		}
		// The byte leaves THR at once, so THR is empty again right
		// away and the THRE interrupt (cleared by this write) re-arms.
		u.threPending = true
		if u.mcr&mcrLoop != 0 {
			// Loopback: the transmitter output feeds the receiver
			// (PC16550D 8.6, MCR bit 4).
			if len(u.rx) >= RxBufferSize {
				u.lsr |= lsrOE
			} else {
				u.rx = append(u.rx, v)
			}
			return false, false
		}
		return true, false
	case regIER:
		if dlab {
			u.dlm = v
			return false, false
		}
		old := u.ier
		u.ier = v & ierMask
		// Enabling ETBEI while THR is empty raises THRE at once; Linux's
		// serial8250_startup tests for exactly this (UART_BUG_THRE).
		if old&ierTHRE == 0 && u.ier&ierTHRE != 0 {
			u.threPending = true
		}
	case regIIR: // FCR
		if (v^u.fcr)&fcrEnable != 0 || v&fcrClearRx != 0 {
			// Changing the FIFO enable bit clears both FIFOs.
			freed = len(u.rx) > 0
			u.rx = u.rx[:0]
		}
		u.fcr = v &^ (fcrClearRx | fcrClearTx)
		if u.fcr&fcrEnable == 0 {
			u.fcr = 0
		}
	case regLCR:
		u.lcr = v
	case regMCR:
		wasLoop := u.mcr&mcrLoop != 0
		u.mcr = v & mcrMask
		u.setModemLines(u.modemLines())
		freed = wasLoop && u.mcr&mcrLoop == 0 && len(u.rx) < RxBufferSize
	case regLSR, regMSR:
		// Factory test registers on a 16550A; writes have no defined
		// effect, so they are ignored.
	default: // regSCR
		u.scr = v
	}
	return false, freed
}

// modemLines returns the MSR status bits (7:4) the modem inputs now have.
func (u *UART) modemLines() byte {
	if u.mcr&mcrLoop == 0 {
		return msrIdle
	}
	// Loopback wiring: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
	var m byte
	if u.mcr&mcrDTR != 0 {
		m |= msrDSR
	}
	if u.mcr&mcrRTS != 0 {
		m |= msrCTS
	}
	if u.mcr&mcrOut1 != 0 {
		m |= msrRI
	}
	if u.mcr&mcrOut2 != 0 {
		m |= msrDCD
	}
	return m
}

// setModemLines updates MSR's line bits and latches the delta bits.
func (u *UART) setModemLines(lines byte) {
	old := u.msr
	changed := old ^ lines
	delta := old & msrDelta
	if changed&msrCTS != 0 {
		delta |= msrDCTS
	}
	if changed&msrDSR != 0 {
		delta |= msrDDSR
	}
	if old&msrRI != 0 && lines&msrRI == 0 { // trailing edge only
		delta |= msrTERI
	}
	if changed&msrDCD != 0 {
		delta |= msrDDCD
	}
	u.msr = lines&0xF0 | delta
}

func (u *UART) lsrValue() byte {
	v := u.lsr
	if len(u.rx) > 0 {
		v |= lsrDR
	}
	return v
}

// rxTrigger is the receive FIFO trigger level selected by FCR bits 7:6.
func (u *UART) rxTrigger() int {
	if u.fcr&fcrEnable == 0 {
		return 1
	}
	return [4]int{1, 4, 8, 14}[u.fcr>>6]
}

// iir computes the interrupt identification without side effects, by the
// priority order of PC16550D table IV.
func (u *UART) iir() byte {
	var fifo byte
	if u.fcr&fcrEnable != 0 {
		fifo = iirFIFOs
	}
	switch {
	case u.ier&ierRLS != 0 && u.lsr&lsrError != 0:
		return fifo | iirRLS
	case u.ier&ierRDA != 0 && len(u.rx) >= u.rxTrigger():
		return fifo | iirRDA
	case u.ier&ierRDA != 0 && len(u.rx) > 0:
		// Fewer bytes than the trigger level wait in the FIFO. The host
		// delivers input in whole chunks, so the line is idle by the
		// time the guest looks: report the character timeout at once.
		return fifo | iirTimeout
	case u.ier&ierTHRE != 0 && u.threPending:
		return fifo | iirTHRE
	case u.ier&ierMS != 0 && u.msr&msrDelta != 0:
		return fifo | iirMS
	}
	return fifo | iirNone
}

// unlockAndUpdate releases mu, then transmits tx and reports a changed
// interrupt level. irqMu and outMu are taken before mu is released so that
// concurrent callers deliver output and levels in the order they computed them.
// The MCR OUT2 gate of PC boards is not modelled, as in QEMU: Linux sets
// OUT2 whenever it wants interrupts anyway.
func (u *UART) unlockAndUpdate(tx []byte) {
	level := u.iir()&iirNone == 0
	changed := level != u.level
	u.level = level
	if changed {
		u.irqMu.Lock()
	}
	if len(tx) > 0 {
		u.outMu.Lock()
	}
	u.mu.Unlock()
	if len(tx) > 0 {
		u.txBytes.Add(uint64(len(tx)))
		if u.out != nil {
			if _, err := u.out.Write(tx); err != nil {
				u.outErrs++
			}
		}
		u.outMu.Unlock()
	}
	if changed {
		if u.irq != nil {
			u.irq(level)
		}
		u.irqMu.Unlock()
	}
}

// signalSpace wakes a goroutine waiting in InputWait; the channel holds one
// pending wake-up so none is lost between Input and the wait.
func (u *UART) signalSpace() {
	select {
	case u.space <- struct{}{}:
	default:
	}
}

// Input queues bytes received from the host console and returns how many
// were accepted; it accepts none while the UART is in loopback (the
// receiver is then disconnected from the line) or its buffer is full.
func (u *UART) Input(p []byte) int {
	u.mu.Lock()
	n := 0
	if u.mcr&mcrLoop == 0 {
		n = min(len(p), RxBufferSize-len(u.rx))
		u.rx = append(u.rx, p[:n]...)
	}
	u.rxBytes.Add(uint64(n))
	u.unlockAndUpdate(nil)
	return n
}

// Space returns a channel that receives a value when the guest frees
// receive buffer space, so a console pump can wait instead of spinning.
func (u *UART) Space() <-chan struct{} { return u.space }

// InputWait queues all of p, waiting for the guest to drain the receive
// buffer as needed, until ctx is done. It returns how many bytes were queued.
func (u *UART) InputWait(ctx context.Context, p []byte) (int, error) {
	done := 0
	for {
		done += u.Input(p[done:])
		if done == len(p) {
			return done, nil
		}
		select {
		case <-u.space:
		case <-ctx.Done():
			return done, fmt.Errorf("uart8250: input %d of %d bytes: %w", done, len(p), ctx.Err())
		}
	}
}

// OutputErrors returns how many transmitted chunks the host writer refused.
func (u *UART) OutputErrors() uint64 {
	u.outMu.Lock()
	defer u.outMu.Unlock()
	return u.outErrs
}

// Counters are the bytes that crossed the serial line, for statistics.
type Counters struct {
	TxBytes uint64 // transmitted by the guest
	RxBytes uint64 // received by the guest (accepted into its buffer)
}

// Counters returns the bytes transmitted and received so far.
func (u *UART) Counters() Counters {
	return Counters{TxBytes: u.txBytes.Load(), RxBytes: u.rxBytes.Load()}
}
