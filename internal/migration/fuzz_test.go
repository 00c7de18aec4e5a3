package migration

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzFrameDecoder feeds arbitrary bytes to the frame reader and to every
// payload decoder.
func FuzzFrameDecoder(f *testing.F) {
	f.Add(validStream().Bytes()[preambleSize:])
	f.Add(newStream(0).frame(MsgPages, 0, pages(16*PageSize|pageZero, 1|pageZero)).Bytes()[preambleSize:])
	f.Add([]byte{byte(MsgPages), 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Add(newStream(FeatureFiles).frame(MsgFiles, 0, encodeFileCount(3)).Bytes()[preambleSize:])
	l, _ := newLayout(smallRegions)
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(bytes.NewReader(data))
		for {
			fm, err := fr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, ErrCorrupt) {
					t.Fatalf("unexpected error class: %v", err)
				}
				return
			}
			if len(fm.Payload) > MaxFrame {
				t.Fatalf("frame of %d bytes accepted", len(fm.Payload))
			}
			switch fm.Type {
			case MsgHello:
				if h, err := decodeHello(fm.Payload); err == nil && (len(h.Regions) > maxRegions || len(h.Disks) > maxDisks) {
					t.Fatalf("HELLO with %d regions, %d disks accepted", len(h.Regions), len(h.Disks))
				}
			case MsgPages:
				decodePages(fm.Payload, func(gpa uint64, data []byte) error {
					if gpa%PageSize != 0 || (data != nil && len(data) != PageSize) {
						t.Fatalf("entry %#x with %d bytes", gpa, len(data))
					}
					l.contains(gpa, PageSize)
					return nil
				})
			case MsgDisk:
				if b, err := decodeDisk(fm.Payload); err == nil && b.Data != nil && len(b.Data) != int(b.Length) {
					t.Fatalf("disk block of %d bytes claims %d", len(b.Data), b.Length)
				}
			case MsgRoundEnd, MsgComplete:
				decodeTotals(fm.Type, fm.Payload)
			case MsgFiles:
				if n, err := decodeFileCount(fm.Payload); err == nil && (n < 1 || n > maxFilesPerFrame) {
					t.Fatalf("FILES frame of %d descriptors accepted", n)
				}
			}
		}
	})
}

// FuzzReceive runs the whole receiver on an arbitrary source stream: it
// must fail cleanly or succeed, and never write outside guest RAM (the fake
// destination reports such a write as errNotRAM).
func FuzzReceive(f *testing.F) {
	f.Add(validStream().Bytes())
	f.Add(newStream(FeatureCompress).frame(MsgPages, 0, pages(1<<32|pageZero, 3*PageSize|pageZero)).Bytes())
	f.Add(newStream(0).frame(MsgComplete, 0, complete(0, 0, 0, nil)).frame(MsgGo, 0, nil).Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, state, err := receiveStream(data)
		if errors.Is(err, errNotRAM) {
			t.Fatalf("write outside guest RAM reached the destination: %v", err)
		}
		if err != nil && state != nil {
			t.Fatal("state returned with an error")
		}
	})
}
