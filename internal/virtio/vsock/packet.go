package vsock

import "encoding/binary"

// HeaderSize is struct virtio_vsock_hdr (5.10.6).
const HeaderSize = 44

// Packet types (5.10.6).
const (
	TypeStream    = 1
	TypeSeqpacket = 2
)

// Operations (5.10.6).
const (
	OpInvalid       = 0
	OpRequest       = 1
	OpResponse      = 2
	OpRST           = 3
	OpShutdown      = 4
	OpRW            = 5
	OpCreditUpdate  = 6
	OpCreditRequest = 7
)

// Shutdown flags (5.10.6.5): the sender will receive / send no more.
const (
	ShutdownRcv  = 1
	ShutdownSend = 2
)

// HostCID is the host's address (5.10.4: CID 2 is the host).
const HostCID = 2

// Header is a virtio_vsock_hdr.
type Header struct {
	SrcCID, DstCID   uint64
	SrcPort, DstPort uint32
	Len              uint32
	Type, Op         uint16
	Flags            uint32
	BufAlloc         uint32
	FwdCnt           uint32
}

// ParseHeader decodes the first HeaderSize bytes of b; ok is false if b
// is shorter.
func ParseHeader(b []byte) (h Header, ok bool) {
	if len(b) < HeaderSize {
		return Header{}, false
	}
	le := binary.LittleEndian
	return Header{
		SrcCID: le.Uint64(b[0:]), DstCID: le.Uint64(b[8:]),
		SrcPort: le.Uint32(b[16:]), DstPort: le.Uint32(b[20:]),
		Len: le.Uint32(b[24:]), Type: le.Uint16(b[28:]), Op: le.Uint16(b[30:]),
		Flags: le.Uint32(b[32:]), BufAlloc: le.Uint32(b[36:]), FwdCnt: le.Uint32(b[40:]),
	}, true
}

// Put encodes h into the first HeaderSize bytes of b.
func (h Header) Put(b []byte) {
	_ = b[HeaderSize-1]
	le := binary.LittleEndian
	le.PutUint64(b[0:], h.SrcCID)
	le.PutUint64(b[8:], h.DstCID)
	le.PutUint32(b[16:], h.SrcPort)
	le.PutUint32(b[20:], h.DstPort)
	le.PutUint32(b[24:], h.Len)
	le.PutUint16(b[28:], h.Type)
	le.PutUint16(b[30:], h.Op)
	le.PutUint32(b[32:], h.Flags)
	le.PutUint32(b[36:], h.BufAlloc)
	le.PutUint32(b[40:], h.FwdCnt)
}
