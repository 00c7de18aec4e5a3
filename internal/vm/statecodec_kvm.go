package vm

import (
	"fmt"

	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/snapshot"
)

// The KVM structures of a vCPU and of the in-kernel devices, field by field
// (Documentation/virt/kvm/api.rst names each one). Padding and reserved
// fields are not stored: KVM wants them zero, and zero is what decoding
// leaves there.

// Bounds on the counts in a vCPU's state.
const (
	maxMSRs      = 4096 // KVM_GET_MSR_INDEX_LIST lists a few hundred
	minVCPUBytes = 1024 // a vCPU's encoding holds at least its LAPIC page
	msrBytes     = 4 + 8
)

func encodeVCPU(e *snapshot.Encoder, s *VCPUState) {
	encodeRegs(e, &s.Regs)
	encodeSregs(e, &s.Sregs)
	encodeFPU(e, &s.FPU)
	e.Bool(s.XSave != nil)
	if s.XSave != nil {
		for _, w := range s.XSave.Region {
			e.U32(w)
		}
	}
	e.Bool(s.XCRs != nil)
	if s.XCRs != nil {
		e.U32(s.XCRs.NrXCRs)
		e.U32(s.XCRs.Flags)
		for _, x := range s.XCRs.XCRs {
			e.U32(x.XCR)
			e.U64(x.Value)
		}
	}
	e.Len(len(s.MSRs))
	for _, m := range s.MSRs {
		e.U32(m.Index)
		e.U64(m.Data)
	}
	e.Raw(s.LAPIC.Regs[:])
	e.U32(s.MPState)
	encodeEvents(e, &s.Events)
}

func decodeVCPU(d *snapshot.Decoder, s *VCPUState) error {
	decodeRegs(d, &s.Regs)
	decodeSregs(d, &s.Sregs)
	decodeFPU(d, &s.FPU)
	if d.Bool() {
		s.XSave = new(kvm.XSave)
		for i := range s.XSave.Region {
			s.XSave.Region[i] = d.U32()
		}
	}
	if d.Bool() {
		s.XCRs = new(kvm.XCRs)
		s.XCRs.NrXCRs = d.U32()
		s.XCRs.Flags = d.U32()
		if s.XCRs.NrXCRs > uint32(len(s.XCRs.XCRs)) {
			d.Fail("XCRs: %d registers, at most %d", s.XCRs.NrXCRs, len(s.XCRs.XCRs))
		}
		for i := range s.XCRs.XCRs {
			s.XCRs.XCRs[i].XCR = d.U32()
			s.XCRs.XCRs[i].Value = d.U64()
		}
	}
	if n := d.Len("MSRs", maxMSRs, msrBytes); n > 0 {
		s.MSRs = make([]kvm.MSR, n)
		for i := range s.MSRs {
			s.MSRs[i].Index = d.U32()
			s.MSRs[i].Data = d.U64()
		}
	}
	d.Raw(s.LAPIC.Regs[:])
	s.MPState = d.U32()
	decodeEvents(d, &s.Events)
	return d.Err()
}

func encodeRegs(e *snapshot.Encoder, r *kvm.Regs) {
	for _, v := range [...]uint64{r.RAX, r.RBX, r.RCX, r.RDX, r.RSI, r.RDI, r.RSP, r.RBP,
		r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15, r.RIP, r.RFLAGS} {
		e.U64(v)
	}
}

func decodeRegs(d *snapshot.Decoder, r *kvm.Regs) {
	for _, p := range [...]*uint64{&r.RAX, &r.RBX, &r.RCX, &r.RDX, &r.RSI, &r.RDI, &r.RSP, &r.RBP,
		&r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15, &r.RIP, &r.RFLAGS} {
		*p = d.U64()
	}
}

func encodeSregs(e *snapshot.Encoder, s *kvm.Sregs) {
	for _, seg := range [...]*kvm.Segment{&s.CS, &s.DS, &s.ES, &s.FS, &s.GS, &s.SS, &s.TR, &s.LDT} {
		e.U64(seg.Base)
		e.U32(seg.Limit)
		e.U16(seg.Selector)
		e.Raw([]byte{seg.Type, seg.Present, seg.DPL, seg.DB, seg.S, seg.L, seg.G, seg.AVL, seg.Unusable})
	}
	for _, t := range [...]*kvm.DTable{&s.GDT, &s.IDT} {
		e.U64(t.Base)
		e.U16(t.Limit)
	}
	for _, v := range [...]uint64{s.CR0, s.CR2, s.CR3, s.CR4, s.CR8, s.EFER, s.APICBase} {
		e.U64(v)
	}
	for _, v := range s.InterruptBitmap {
		e.U64(v)
	}
}

func decodeSregs(d *snapshot.Decoder, s *kvm.Sregs) {
	for _, seg := range [...]*kvm.Segment{&s.CS, &s.DS, &s.ES, &s.FS, &s.GS, &s.SS, &s.TR, &s.LDT} {
		seg.Base = d.U64()
		seg.Limit = d.U32()
		seg.Selector = d.U16()
		for _, p := range [...]*uint8{&seg.Type, &seg.Present, &seg.DPL, &seg.DB, &seg.S, &seg.L, &seg.G, &seg.AVL, &seg.Unusable} {
			*p = d.U8()
		}
	}
	for _, t := range [...]*kvm.DTable{&s.GDT, &s.IDT} {
		t.Base = d.U64()
		t.Limit = d.U16()
	}
	for _, p := range [...]*uint64{&s.CR0, &s.CR2, &s.CR3, &s.CR4, &s.CR8, &s.EFER, &s.APICBase} {
		*p = d.U64()
	}
	for i := range s.InterruptBitmap {
		s.InterruptBitmap[i] = d.U64()
	}
}

func encodeFPU(e *snapshot.Encoder, f *kvm.FPU) {
	for i := range f.FPR {
		e.Raw(f.FPR[i][:])
	}
	e.U16(f.FCW)
	e.U16(f.FSW)
	e.U8(f.FTWX)
	e.U16(f.LastOpcode)
	e.U64(f.LastIP)
	e.U64(f.LastDP)
	for i := range f.XMM {
		e.Raw(f.XMM[i][:])
	}
	e.U32(f.MXCSR)
}

func decodeFPU(d *snapshot.Decoder, f *kvm.FPU) {
	for i := range f.FPR {
		d.Raw(f.FPR[i][:])
	}
	f.FCW = d.U16()
	f.FSW = d.U16()
	f.FTWX = d.U8()
	f.LastOpcode = d.U16()
	f.LastIP = d.U64()
	f.LastDP = d.U64()
	for i := range f.XMM {
		d.Raw(f.XMM[i][:])
	}
	f.MXCSR = d.U32()
}

func encodeEvents(e *snapshot.Encoder, ev *kvm.VCPUEvents) {
	x := &ev.Exception
	e.Raw([]byte{x.Injected, x.Nr, x.HasErrorCode, x.Pending})
	e.U32(x.ErrorCode)
	in := &ev.Interrupt
	e.Raw([]byte{in.Injected, in.Nr, in.Soft, in.Shadow, ev.NMI.Injected, ev.NMI.Pending, ev.NMI.Masked})
	e.U32(ev.SIPIVector)
	e.U32(ev.Flags)
	s := &ev.SMI
	e.Raw([]byte{s.SMM, s.Pending, s.SMMInsideNMI, s.LatchedInit, ev.TripleFault.Pending, ev.ExceptionHasPayload})
	e.U64(ev.ExceptionPayload)
}

func decodeEvents(d *snapshot.Decoder, ev *kvm.VCPUEvents) {
	x := &ev.Exception
	for _, p := range [...]*uint8{&x.Injected, &x.Nr, &x.HasErrorCode, &x.Pending} {
		*p = d.U8()
	}
	x.ErrorCode = d.U32()
	in := &ev.Interrupt
	for _, p := range [...]*uint8{&in.Injected, &in.Nr, &in.Soft, &in.Shadow, &ev.NMI.Injected, &ev.NMI.Pending, &ev.NMI.Masked} {
		*p = d.U8()
	}
	ev.SIPIVector = d.U32()
	ev.Flags = d.U32()
	s := &ev.SMI
	for _, p := range [...]*uint8{&s.SMM, &s.Pending, &s.SMMInsideNMI, &s.LatchedInit, &ev.TripleFault.Pending, &ev.ExceptionHasPayload} {
		*p = d.U8()
	}
	ev.ExceptionPayload = d.U64()
}

// irqChipBytes is the encoded size of one interrupt controller.
const irqChipBytes = 4 + 512

func encodeIRQChip(e *snapshot.Encoder, c *kvm.IRQChip) {
	e.U32(c.ChipID)
	e.Raw(c.Chip[:])
}

func decodeIRQChip(d *snapshot.Decoder, c *kvm.IRQChip) {
	c.ChipID = d.U32()
	if c.ChipID > kvm.IRQChipIOAPIC {
		d.Fail("interrupt controller id %d", c.ChipID)
	}
	d.Raw(c.Chip[:])
}

func encodePIT(e *snapshot.Encoder, p *kvm.PITState2) {
	for i := range p.Channels {
		c := &p.Channels[i]
		e.U32(c.Count)
		e.U16(c.LatchedCount)
		e.Raw([]byte{c.CountLatched, c.StatusLatched, c.Status, c.ReadState, c.WriteState, c.WriteLatch,
			c.RWMode, c.Mode, c.BCD, c.Gate})
		e.I64(c.CountLoadTime)
	}
	e.U32(p.Flags)
}

func decodePIT(d *snapshot.Decoder, p *kvm.PITState2) {
	for i := range p.Channels {
		c := &p.Channels[i]
		c.Count = d.U32()
		c.LatchedCount = d.U16()
		for _, b := range [...]*uint8{&c.CountLatched, &c.StatusLatched, &c.Status, &c.ReadState, &c.WriteState,
			&c.WriteLatch, &c.RWMode, &c.Mode, &c.BCD, &c.Gate} {
			*b = d.U8()
		}
		c.CountLoadTime = d.I64()
	}
	p.Flags = d.U32()
}

func encodeClock(e *snapshot.Encoder, c *kvm.ClockData) {
	e.U64(c.Clock)
	e.U32(c.Flags)
	e.U64(c.Realtime)
	e.U64(c.HostTSC)
}

func decodeClock(d *snapshot.Decoder, c *kvm.ClockData) {
	c.Clock = d.U64()
	c.Flags = d.U32()
	c.Realtime = d.U64()
	c.HostTSC = d.U64()
}

// decodeVCPUs reads n vCPU states, naming the one that fails.
func decodeVCPUs(d *snapshot.Decoder, n int) ([]VCPUState, error) {
	if n == 0 {
		return nil, d.Err()
	}
	out := make([]VCPUState, n)
	for i := range out {
		if err := decodeVCPU(d, &out[i]); err != nil {
			return nil, fmt.Errorf("vCPU %d: %w", i, err)
		}
	}
	return out, nil
}
