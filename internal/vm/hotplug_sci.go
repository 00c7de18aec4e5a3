package vm

import "sync"

// Sources of the ACPI System Control Interrupt. The SCI is one shared,
// level-triggered line (ACPI 6.5 section 5.6.4: the PM1 fixed events and
// the GPE blocks all raise it), so its level is the OR of theirs.
const (
	sciPM1 = iota // PM1a fixed events (internal/legacy/acpipm)
	sciGPE        // GPE0 block (internal/pcihotplug)
)

// sciLine ORs the SCI sources and drives IRQ sciIRQ with the result.
type sciLine struct {
	mu     sync.Mutex
	levels uint32
	set    func(bool)
}

// sciSource returns the level callback of one SCI source.
func (m *Machine) sciSource(src int) func(bool) {
	m.sciOnce.Do(func() { m.sci = &sciLine{set: m.irqLine(sciIRQ)} })
	return m.sci.source(src)
}

// source returns the level callback of source src.
func (l *sciLine) source(src int) func(bool) {
	return func(level bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if level {
			l.levels |= 1 << src
		} else {
			l.levels &^= 1 << src
		}
		// Setting a level line to the level it has is harmless, and it
		// keeps KVM's line right after a device restores its own level.
		l.set(l.levels != 0)
	}
}
