package cli

import (
	"bytes"
	"regexp"
	"testing"
)

// TestProgressBars: each item gets its heading and a bar of its own,
// ended (a newline) when the next item starts and by finish.
func TestProgressBars(t *testing.T) {
	var w bytes.Buffer
	b := &progressBars{w: &w}
	b.finish() // nothing started: nothing drawn
	b.update("disk 1 of 2:", 0, 4)
	b.update("disk 1 of 2:", 4, 4)
	b.update("disk 2 of 2:", 2, 2)
	b.finish()
	b.finish()
	want := regexp.MustCompile(`^disk 1 of 2:\n\r\[ +\]   0\.0%\r\[=+\] 100\.0%\r\[=+\] 100\.0%\ndisk 2 of 2:\n\r\[=+\] 100\.0%\r\[=+\] 100\.0%\n$`)
	if !want.Match(w.Bytes()) {
		t.Errorf("output %q", w.String())
	}
}
