// Package archtest has no code: its tests hold the tree's dependency
// rules (which packages may import what, and what each binary links), so
// that a stray import fails a test instead of quietly growing a binary.
package archtest
