package usage

import (
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"
	"strings"
	"time"
)

// The on-disk form of a sample is one line of space-separated fields:
//
//	1 <unix ms> <host> <vm> <state> <vcpus> <memory> <cpu s> <rss> <io> <disk rd> <disk wr> <net rx> <net tx> <crc32>
//
// The first field is the format version. Names are percent-escaped (an
// empty name is "~"), so a field never holds a space or a newline. The last
// field is the IEEE CRC-32 of everything before its separating space, in
// hex: a line a crash tore, or that a later append ran into, fails it and is
// skipped, never misread.

// ErrBadLine is returned for a line that is not a valid sample.
var ErrBadLine = errors.New("usage: bad sample line")

const (
	formatVersion = "1"
	lineFields    = 15
	maxLine       = 4096 // longer lines are never written, so never valid
	maxName       = 253  // longest host, VM or state name kept
)

// AppendLine appends s's on-disk line, newline included, to b.
func AppendLine(b []byte, s Sample) []byte {
	start := len(b)
	b = append(b, formatVersion...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, s.Time.UnixMilli(), 10)
	for _, n := range []string{s.Host, s.VM, s.State} {
		b = append(b, ' ')
		b = appendName(b, n)
	}
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(s.VCPUs), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, s.MemoryBytes, 10)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, s.CPUSeconds, 'f', -1, 64)
	b = append(b, ' ')
	b = strconv.AppendUint(b, s.RSSBytes, 10)
	io := byte('0')
	if s.HasIO {
		io = '1'
	}
	b = append(b, ' ', io)
	for _, v := range []uint64{s.DiskReadBytes, s.DiskWriteBytes, s.NetRxBytes, s.NetTxBytes} {
		b = append(b, ' ')
		b = strconv.AppendUint(b, v, 10)
	}
	b = append(b, ' ')
	b = append(b, lineCRC(b[start:len(b)-1])...)
	return append(b, '\n')
}

// lineCRC is the checksum field for a line's body.
func lineCRC(body []byte) string { return fmt.Sprintf("%08x", crc32.ChecksumIEEE(body)) }

// nameSafe reports whether c may appear unescaped in a name field.
func nameSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':'
}

func appendName(b []byte, n string) []byte {
	if len(n) > maxName {
		n = n[:maxName]
	}
	if n == "" {
		return append(b, '~')
	}
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(n); i++ {
		c := n[i]
		if nameSafe(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return b
}

func parseName(f string) (string, error) {
	if f == "~" {
		return "", nil
	}
	if f == "" {
		return "", fmt.Errorf("%w: empty name field", ErrBadLine)
	}
	var sb strings.Builder
	for i := 0; i < len(f); i++ {
		c := f[i]
		switch {
		case nameSafe(c):
			sb.WriteByte(c)
		case c == '%' && i+2 < len(f):
			v, err := strconv.ParseUint(f[i+1:i+3], 16, 8)
			if err != nil {
				return "", fmt.Errorf("%w: name %q: bad escape", ErrBadLine, f)
			}
			sb.WriteByte(byte(v))
			i += 2
		default:
			return "", fmt.Errorf("%w: name %q: byte %#x", ErrBadLine, f, c)
		}
	}
	if sb.Len() > maxName {
		return "", fmt.Errorf("%w: name longer than %d bytes", ErrBadLine, maxName)
	}
	return sb.String(), nil
}

// ParseLine decodes one line (without its newline) written by AppendLine.
func ParseLine(line []byte) (Sample, error) {
	if len(line) > maxLine {
		return Sample{}, fmt.Errorf("%w: %d bytes long", ErrBadLine, len(line))
	}
	sp := strings.LastIndexByte(string(line), ' ')
	if sp < 0 {
		return Sample{}, fmt.Errorf("%w: no checksum", ErrBadLine)
	}
	want, err := strconv.ParseUint(string(line[sp+1:]), 16, 32)
	if err != nil || len(line)-sp-1 != 8 {
		return Sample{}, fmt.Errorf("%w: bad checksum field", ErrBadLine)
	}
	if crc32.ChecksumIEEE(line[:sp]) != uint32(want) {
		return Sample{}, fmt.Errorf("%w: checksum mismatch", ErrBadLine)
	}
	f := strings.Split(string(line[:sp]), " ")
	if len(f) != lineFields-1 {
		return Sample{}, fmt.Errorf("%w: %d fields, want %d", ErrBadLine, len(f)+1, lineFields)
	}
	if f[0] != formatVersion {
		return Sample{}, fmt.Errorf("%w: format version %q", ErrBadLine, f[0])
	}
	var s Sample
	ms, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return Sample{}, fmt.Errorf("%w: time %q", ErrBadLine, f[1])
	}
	s.Time = time.UnixMilli(ms).UTC()
	if s.Host, err = parseName(f[2]); err != nil {
		return Sample{}, err
	}
	if s.VM, err = parseName(f[3]); err != nil {
		return Sample{}, err
	}
	if s.State, err = parseName(f[4]); err != nil {
		return Sample{}, err
	}
	vcpus, err := strconv.ParseUint(f[5], 10, 16)
	if err != nil {
		return Sample{}, fmt.Errorf("%w: vcpus %q", ErrBadLine, f[5])
	}
	s.VCPUs = int(vcpus)
	cpu, err := strconv.ParseFloat(f[7], 64)
	if err != nil || cpu < 0 || math.IsInf(cpu, 0) || math.IsNaN(cpu) {
		return Sample{}, fmt.Errorf("%w: cpu seconds %q", ErrBadLine, f[7])
	}
	s.CPUSeconds = cpu
	switch f[9] {
	case "0":
	case "1":
		s.HasIO = true
	default:
		return Sample{}, fmt.Errorf("%w: io flag %q", ErrBadLine, f[9])
	}
	for _, u := range []struct {
		dst *uint64
		i   int
	}{{&s.MemoryBytes, 6}, {&s.RSSBytes, 8}, {&s.DiskReadBytes, 10}, {&s.DiskWriteBytes, 11}, {&s.NetRxBytes, 12}, {&s.NetTxBytes, 13}} {
		v, err := strconv.ParseUint(f[u.i], 10, 64)
		if err != nil {
			return Sample{}, fmt.Errorf("%w: field %d %q", ErrBadLine, u.i+1, f[u.i])
		}
		*u.dst = v
	}
	return s, nil
}
