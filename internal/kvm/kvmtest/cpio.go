package kvmtest

import (
	"bytes"
	"fmt"
)

// CPIOFile is one regular file for an initramfs overlay.
type CPIOFile struct {
	Name string // path inside the guest, without the leading slash
	Mode uint32 // permission bits
	Data []byte
}

// CPIO encodes files as a "newc" cpio archive (the format Linux's initramfs
// unpacker reads; Documentation/driver-api/early-userspace/buffer-format.rst).
// Appended to an existing initramfs it adds or replaces those files: the
// kernel unpacks concatenated archives in order.
func CPIO(files []CPIOFile) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	entry := func(ino int, name string, mode uint32, data []byte) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name)
		b.WriteByte(0)
		pad()
		b.Write(data)
		pad()
	}
	for i, f := range files {
		entry(i+1, f.Name, 0o100000|f.Mode, f.Data)
	}
	entry(0, "TRAILER!!!", 0, nil)
	return b.Bytes()
}
