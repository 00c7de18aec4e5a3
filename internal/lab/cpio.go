package lab

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// Overlay is a set of files added to a lab host's initramfs. The kernel
// unpacks concatenated "newc" cpio archives in order
// (Documentation/driver-api/early-userspace/buffer-format.rst), so an overlay
// appended to base.cpio adds or replaces files without rebuilding it.
type Overlay struct {
	entries map[string]overlayEntry
}

type overlayEntry struct {
	src  string // a host file to copy, or
	data []byte // the contents
	mode uint32 // permission bits
}

// Add puts the host file src at name (an absolute path inside the lab host).
func (o *Overlay) Add(name, src string, mode uint32) {
	o.put(name, overlayEntry{src: src, mode: mode})
}

// AddData puts data at name.
func (o *Overlay) AddData(name string, data []byte, mode uint32) {
	o.put(name, overlayEntry{data: data, mode: mode})
}

// AddDir puts every regular file directly in the host folder src under dir.
func (o *Overlay) AddDir(dir, src string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("lab: overlay: %w", err)
	}
	for _, e := range ents {
		info, err := os.Stat(path.Join(src, e.Name())) // follows symlinks
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		o.Add(path.Join(dir, e.Name()), path.Join(src, e.Name()), uint32(info.Mode().Perm()))
	}
	return nil
}

func (o *Overlay) put(name string, e overlayEntry) {
	if o.entries == nil {
		o.entries = map[string]overlayEntry{}
	}
	o.entries[strings.TrimPrefix(path.Clean("/"+name), "/")] = e
}

// WriteTo writes the overlay as a newc cpio archive, parent folders first
// (the kernel's unpacker does not create missing folders).
func (o *Overlay) WriteTo(w io.Writer) (int64, error) {
	cw := &cpioWriter{w: bufio.NewWriterSize(w, 1<<20)}
	names := make([]string, 0, len(o.entries))
	for n := range o.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	for _, n := range names {
		var parents []string
		for d := path.Dir(n); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			cw.header(parents[i], 0o040755, 0)
		}
		e := o.entries[n]
		if e.src == "" {
			cw.header(n, 0o100000|e.mode, int64(len(e.data)))
			cw.body(e.data)
			continue
		}
		if err := cw.file(n, e.src, e.mode); err != nil {
			return cw.n, err
		}
	}
	cw.header("TRAILER!!!", 0, 0)
	if cw.err == nil {
		cw.err = cw.w.Flush()
	}
	return cw.n, cw.err
}

type cpioWriter struct {
	w   *bufio.Writer
	n   int64
	ino int
	err error
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	m, err := c.w.Write(b)
	c.n += int64(m)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// header writes a newc header: magic 070701, then 13 8-digit hex fields
// (ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
// rdevmajor, rdevminor, namesize, check), the name and padding.
func (c *cpioWriter) header(name string, mode uint32, size int64) {
	c.ino++
	nlink := 1
	if mode&0o040000 != 0 {
		nlink = 2
	}
	c.write(fmt.Appendf(nil, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0))
	c.write(append([]byte(name), 0))
	c.pad()
}

func (c *cpioWriter) body(b []byte) {
	c.write(b)
	c.pad()
}

func (c *cpioWriter) file(name, src string, mode uint32) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("lab: overlay: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("lab: overlay: %w", err)
	}
	c.header(name, 0o100000|mode, info.Size())
	if c.err != nil {
		return c.err
	}
	m, err := io.Copy(c.w, f)
	c.n += m
	if err == nil && m != info.Size() {
		err = fmt.Errorf("%s changed size while being copied", src)
	}
	if err != nil {
		return fmt.Errorf("lab: overlay: %w", err)
	}
	c.pad()
	return c.err
}
