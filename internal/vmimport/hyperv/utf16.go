package hyperv

import (
	"encoding/binary"
	"io"
	"strings"
	"unicode/utf16"
)

// toUTF8 decodes the UTF-16 Hyper-V writes (a byte order mark first) into
// UTF-8; other text is returned as it is.
func toUTF8(b []byte) []byte {
	var order binary.ByteOrder
	switch {
	case len(b) >= 2 && b[0] == 0xff && b[1] == 0xfe:
		order = binary.LittleEndian
	case len(b) >= 2 && b[0] == 0xfe && b[1] == 0xff:
		order = binary.BigEndian
	default:
		return b
	}
	u := make([]uint16, (len(b)-2)/2)
	for i := range u {
		u[i] = order.Uint16(b[2+2*i:])
	}
	return []byte(string(utf16.Decode(u)))
}

// charsetReader accepts the "UTF-16" label of a declaration whose text
// toUTF8 has already converted.
func charsetReader(label string, r io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "utf-16", "utf-16le", "utf-16be", "unicode":
		return r, nil
	}
	return nil, &unsupportedCharset{label}
}

type unsupportedCharset struct{ label string }

func (e *unsupportedCharset) Error() string { return "unsupported charset " + e.label }
