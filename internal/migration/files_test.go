package migration

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fileVM is a fakeVM that hands over files.
type fileVM struct {
	*fakeVM
	files  []*os.File
	called int
}

func (v *fileVM) HandoverFiles() ([]*os.File, error) {
	v.called++
	return v.files, nil
}

// fileDest is a fakeDest that takes files.
type fileDest struct {
	memOnlyDest
	got    []*os.File
	called int
}

func (d *fileDest) ReceiveFiles(files []*os.File) {
	d.called++
	d.got = files
}

// unixPair returns two connected Unix stream sockets.
func unixPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan *net.UnixConn, 1)
	go func() {
		c, _ := l.AcceptUnix()
		acc <- c
	}()
	a, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	b := <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// tempFiles makes n files, each holding its index, opened for reading.
func tempFiles(t *testing.T, n int) []*os.File {
	t.Helper()
	var out []*os.File
	for i := range n {
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, []byte{byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

func TestMigrateHandsOverFiles(t *testing.T) {
	tests := []struct {
		name      string
		unix      bool
		files     int
		wantFiles int
	}{
		{name: "unix socket", unix: true, files: 3, wantFiles: 3},
		{name: "unix socket, more than one frame", unix: true, files: maxFilesPerFrame + 7, wantFiles: maxFilesPerFrame + 7},
		{name: "unix socket, nothing to hand over", unix: true, files: 0, wantFiles: 0},
		{name: "tcp sends none", files: 3, wantFiles: 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := tempFiles(t, tt.files)
			stats := make([]os.FileInfo, len(files))
			for j, f := range files {
				var err error
				if stats[j], err = f.Stat(); err != nil {
					t.Fatal(err)
				}
			}
			v := &fileVM{fakeVM: newFakeVM(uint64(i), testRegions), files: files}
			d := &fileDest{memOnlyDest: memOnlyDest{newFakeDest(testRegions)}}
			var sc, dc net.Conn
			if tt.unix {
				sc, dc = unixPair(t)
			} else {
				sc, dc = connPair(t, true)
			}
			_, r, err := migrate(t, context.Background(), sc, dc, v, v.fakeVM, d, Options{MaxRounds: 2})
			if err != nil || r.err != nil {
				t.Fatalf("send: %v, receive: %v", err, r.err)
			}
			if d.called != 1 {
				t.Fatalf("ReceiveFiles called %d times, want once", d.called)
			}
			if len(d.got) != tt.wantFiles {
				t.Fatalf("destination got %d files, want %d", len(d.got), tt.wantFiles)
			}
			if !tt.unix && v.called != 0 {
				t.Fatal("HandoverFiles was called for a TCP migration")
			}
			for j, f := range d.got {
				st, err := f.Stat()
				if err != nil {
					t.Fatal(err)
				}
				if !os.SameFile(st, stats[j]) {
					t.Fatalf("file %d is not the source's file %d", j, j)
				}
				f.Close()
			}
			// Send closed the copies it was given.
			if tt.unix && len(files) > 0 {
				if _, err := files[0].Stat(); !errors.Is(err, os.ErrClosed) {
					t.Fatalf("source file still open after the handover (%v)", err)
				}
			}
		})
	}
}

// pipeEnds returns a pipe; the test keeps r and hands w over. Once every
// copy of w is closed, reading r ends with EOF.
func pipeEnds(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// closedEverywhere reports whether all copies of the write end of r's pipe
// are closed (read gives EOF, not a timeout).
func closedEverywhere(t *testing.T, r *os.File) bool {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := r.Read(make([]byte, 1))
	return err == io.EOF
}

// sendScripted writes a scripted source stream to uc: before FILES, the
// FILES frame itself with fds attached, then after.
func sendScripted(t *testing.T, uc *net.UnixConn, before []byte, files []byte, fds []int, after []byte) {
	t.Helper()
	if _, err := uc.Write(before); err != nil {
		t.Fatal(err)
	}
	if len(fds) > 0 || len(files) > 0 {
		var oob []byte
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		if len(files) == 0 {
			files = []byte{0} // a byte to carry the descriptors
		}
		if _, _, err := uc.WriteMsgUnix(files, oob, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := uc.Write(after); err != nil {
		t.Fatal(err)
	}
}

func TestReceiveFilesHostile(t *testing.T) {
	head := func(features uint64) []byte {
		s := &stream{}
		writePreamble(&s.Buffer, ProtocolVersion)
		s.frame(MsgHello, 0, hello{Features: features, Regions: smallRegions}.encode())
		return s.Bytes()
	}
	frameBytes := func(typ MsgType, payload []byte) []byte {
		s := &stream{}
		return s.frame(typ, 0, payload).Bytes()
	}
	tail := append(frameBytes(MsgComplete, complete(0, 0, 0, nil)), frameBytes(MsgGo, nil)...)
	tests := []struct {
		name     string
		features uint64
		files    []byte // the frame the descriptors ride on
		nfds     int
		want     error
	}{
		{name: "fewer descriptors than announced", features: FeatureFiles, files: frameBytes(MsgFiles, encodeFileCount(2)), nfds: 1, want: ErrProtocol},
		{name: "more descriptors than announced", features: FeatureFiles, files: frameBytes(MsgFiles, encodeFileCount(1)), nfds: 2, want: ErrProtocol},
		{name: "descriptors on another frame", features: FeatureFiles, files: frameBytes(MsgDeviceState, nil), nfds: 1, want: ErrProtocol},
		{name: "FILES without the feature", features: 0, files: frameBytes(MsgFiles, encodeFileCount(1)), nfds: 1, want: ErrProtocol},
		{name: "FILES announcing none", features: FeatureFiles, files: frameBytes(MsgFiles, encodeFileCount(0)), want: ErrProtocol},
		{name: "FILES announcing too many", features: FeatureFiles, files: frameBytes(MsgFiles, encodeFileCount(maxFilesPerFrame+1)), want: ErrProtocol},
		{name: "FILES of the wrong size", features: FeatureFiles, files: frameBytes(MsgFiles, []byte{1, 0}), want: ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := unixPair(t)
			var readEnds, writeEnds []*os.File
			var fds []int
			for range tt.nfds {
				r, w := pipeEnds(t)
				readEnds, writeEnds = append(readEnds, r), append(writeEnds, w)
				fds = append(fds, int(w.Fd()))
			}
			sendScripted(t, src, head(tt.features), tt.files, fds, tail)
			// Our copies of the write ends go; the receiver's must go too.
			closeFiles(writeEnds)
			d := &fileDest{memOnlyDest: memOnlyDest{newFakeDest(smallRegions)}}
			_, err := Receive(context.Background(), dst, d)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if d.called != 0 || d.committed() {
				t.Fatal("a hostile stream reached ReceiveFiles or Commit")
			}
			for i, r := range readEnds {
				if !closedEverywhere(t, r) {
					t.Fatalf("descriptor %d stayed open in the receiver", i)
				}
			}
		})
	}
}

func (d *fileDest) committed() bool { return d.d.committed != nil }

func TestReceiveClosesUnusedFiles(t *testing.T) {
	// A valid FILES frame whose migration then fails: the receiver closes
	// the descriptors it holds.
	src, dst := unixPair(t)
	r, w := pipeEnds(t)
	s := &stream{}
	writePreamble(&s.Buffer, ProtocolVersion)
	s.frame(MsgHello, 0, hello{Features: FeatureFiles, Regions: smallRegions}.encode())
	files := (&stream{}).frame(MsgFiles, 0, encodeFileCount(1)).Bytes()
	bad := (&stream{}).frame(MsgComplete, 0, complete(3, 0, 0, nil)).Bytes() // wrong round count
	sendScripted(t, src, s.Bytes(), files, []int{int(w.Fd())}, bad)
	w.Close()
	d := &fileDest{memOnlyDest: memOnlyDest{newFakeDest(smallRegions)}}
	if _, err := Receive(context.Background(), dst, d); !errors.Is(err, ErrProtocol) {
		t.Fatalf("got %v, want a protocol error", err)
	}
	if !closedEverywhere(t, r) {
		t.Fatal("the receiver kept a handed-over descriptor after failing")
	}
}

func TestReceiveFilesScripted(t *testing.T) {
	// The descriptors arrive with a FILES frame and reach ReceiveFiles.
	src, dst := unixPair(t)
	r, w := pipeEnds(t)
	s := &stream{}
	writePreamble(&s.Buffer, ProtocolVersion)
	s.frame(MsgHello, 0, hello{Features: FeatureFiles, Regions: smallRegions}.encode())
	files := (&stream{}).frame(MsgFiles, 0, encodeFileCount(1)).Bytes()
	tail := (&stream{}).frame(MsgComplete, 0, complete(0, 0, 0, nil)).frame(MsgGo, 0, nil).Bytes()
	sendScripted(t, src, s.Bytes(), files, []int{int(w.Fd())}, tail)
	w.Close()
	d := &fileDest{memOnlyDest: memOnlyDest{newFakeDest(smallRegions)}}
	if _, err := Receive(context.Background(), dst, d); err != nil {
		t.Fatal(err)
	}
	if len(d.got) != 1 {
		t.Fatalf("got %d files, want 1", len(d.got))
	}
	if _, err := d.got[0].Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := r.Read(b); err != nil || !bytes.Equal(b, []byte("x")) {
		t.Fatalf("read %q, %v through the handed-over pipe", b, err)
	}
	d.got[0].Close()
}
