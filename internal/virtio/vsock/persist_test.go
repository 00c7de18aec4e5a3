package vsock

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/snapshot"
)

// sampleVsockState is a vsock state as a busy device saves it: a
// connection with data each way and half closed, one still connecting,
// and an RST for no connection.
func sampleVsockState() *State {
	return &State{
		CID: 42, NextPort: 1<<30 + 9,
		Conns: []ConnState{
			{HostPort: 5000, GuestPort: 1025, PeerBufAlloc: 262144, PeerFwdCnt: 100, TxCnt: 4196, RxCnt: 70000, FwdCnt: 69997,
				Advertised: 65536, PeerShut: ShutdownSend, HostEOF: true, CreditQueued: true, ToHost: []byte("abc"), File: 1},
			{HostPort: 1 << 30, GuestPort: 22, Connecting: true, File: 0},
		},
		Pending: []Packet{
			{Conn: 0, HostPort: 5000, GuestPort: 1025, Op: OpRW, Data: []byte("pending")},
			{Conn: 1, HostPort: 1 << 30, GuestPort: 22, Op: OpRequest},
			{Conn: -1, HostPort: 9, GuestPort: 10, Op: OpRST},
		},
	}
}

func encodeVsockBytes(s *State) []byte {
	e := snapshot.NewEncoder(nil)
	s.EncodeState(e)
	return e.Bytes()
}

// TestStateCodec round-trips vsock states and refuses other versions.
func TestStateCodec(t *testing.T) {
	good := encodeVsockBytes(sampleVsockState())
	withVersion := func(v uint64) []byte {
		b := append([]byte(nil), good...)
		e := snapshot.NewEncoder(b[:0])
		e.U64(v)
		return b
	}
	tests := []struct {
		name    string
		in      []byte
		want    *State
		wantErr error
		mention string
	}{
		{name: "round trip", in: good, want: sampleVsockState()},
		{name: "empty device", in: encodeVsockBytes(&State{CID: 3}), want: &State{CID: 3}},
		{name: "empty", in: nil, mention: "truncated"},
		{name: "version 1 state", in: withVersion(42), wantErr: snapshot.ErrStateFormat, mention: "version 1"},
		{name: "newer version", in: withVersion(stateTag | 3), wantErr: snapshot.ErrStateFormat, mention: "reads version 2"},
		{name: "bad tag", in: withVersion(1<<63 | 2), wantErr: snapshot.ErrStateFormat, mention: "tag"},
		{name: "truncated", in: good[:len(good)-3], mention: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got State
			d := snapshot.NewDecoder(tt.in)
			err := got.DecodeState(d)
			if err == nil {
				err = d.Finish()
			}
			if tt.want != nil {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(&got, tt.want) {
					t.Fatalf("got %+v, want %+v", got, *tt.want)
				}
				return
			}
			if err == nil {
				t.Fatal("decoded a bad vsock state")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

// FuzzDecodeState feeds arbitrary bytes to the vsock state decoder:
// it fails cleanly or decodes what re-encodes identically.
func FuzzDecodeState(f *testing.F) {
	f.Add(encodeVsockBytes(sampleVsockState()))
	f.Add(encodeVsockBytes(&State{CID: 3}))
	f.Add([]byte{42, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		var s State
		d := snapshot.NewDecoder(p)
		if s.DecodeState(d) != nil || d.Finish() != nil {
			return
		}
		if got := encodeVsockBytes(&s); string(got) != string(p) {
			t.Fatal("vsock state re-encodes differently")
		}
	})
}
