package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progressBar draws "[=====>    ]  42.0%" on one line, at most 10 times a second.
type progressBar struct {
	mu   sync.Mutex
	w    io.Writer
	last time.Time
	pct  float64
	done bool
}

func (p *progressBar) update(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if total > 0 {
		p.pct = 100 * float64(done) / float64(total)
	} else {
		p.pct = 100
	}
	if time.Since(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = time.Now()
	p.draw()
}

func (p *progressBar) draw() {
	const width = 40
	n := int(p.pct / 100 * width)
	fmt.Fprintf(p.w, "\r[%s%s] %5.1f%%", strings.Repeat("=", n), strings.Repeat(" ", width-n), p.pct)
}

func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done {
		p.draw()
		fmt.Fprintln(p.w)
		p.done = true
	}
}

// progressBars draws one progressBar per item of a sequence (the disks an
// import or export converts), each under a heading line of its own.
type progressBars struct {
	w       io.Writer
	heading string
	bar     *progressBar
}

// update draws done of total for the item headed heading ("disk 1 of
// 2:"), ending the previous item's bar when the item changes.
func (b *progressBars) update(heading string, done, total int64) {
	if heading != b.heading || b.bar == nil {
		b.finish()
		b.heading, b.bar = heading, &progressBar{w: b.w}
		fmt.Fprintln(b.w, heading)
	}
	b.bar.update(done, total)
}

// finish ends the current item's bar, if any.
func (b *progressBars) finish() {
	if b.bar != nil {
		b.bar.finish()
	}
}
