// Package vsock is the virtio socket device (virtio 1.2 section 5.10) in
// user space, with Firecracker's Unix-socket backend: a host process
// connects to the socket at UDSPath and writes "CONNECT <port>\n" to
// reach guest port <port> (govisor answers "OK <hostport>\n"); a guest
// connection to host port P reaches the Unix socket <UDSPath>_<P>, on
// which a host process listens. Only SOCK_STREAM is offered.
package vsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govisor/govisor/internal/virtio"
)

// Queue indices (5.10.2).
const (
	QueueRx    = 0
	QueueTx    = 1
	QueueEvent = 2
)

// QueueSize is each queue's maximum size.
const QueueSize = 256

// EventTransportReset is VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (5.10.6.6):
// the guest drops all its connections, e.g. after a snapshot is restored.
const EventTransportReset = 0

// Limits.
const (
	// BufAlloc is the receive buffer the device advertises per
	// connection: guest data waiting for the host socket.
	BufAlloc = 256 << 10
	// MaxConnections bounds the open connections; more are refused with RST.
	MaxConnections = 1024
	// maxPayload bounds one packet's payload from the guest (Linux sends
	// at most 64 KiB).
	maxPayload = 64 << 10
	// readChunk is the most read from a host socket at once.
	readChunk = 64 << 10
	// firstHostPort is where host-initiated connections' ports start.
	firstHostPort = 1 << 30
)

// ConnectTimeout bounds the wait for the guest's answer to a
// host-initiated connection and for the host's CONNECT line.
var ConnectTimeout = 10 * time.Second

// Options configures a vsock device.
type Options struct {
	// CID is the guest's context ID (3 to 2^32-2).
	CID uint64
	// UDSPath is the Unix socket host processes connect to; it must not
	// exist. Guest connections to port P go to UDSPath + "_P".
	UDSPath string
}

// ErrOptions reports unusable options.
var ErrOptions = errors.New("vsock: invalid options")

// Counters are the device's activity counts, for metrics.
type Counters struct {
	Connections uint64 // open now
	Accepted    uint64 // connections established, both directions
	Refused     uint64 // connection attempts answered with RST
	BadPackets  uint64 // malformed packets from the guest
	RxPackets   uint64 // packets delivered to the guest
	TxPackets   uint64 // packets from the guest
}

// Device is a virtio-vsock device.
type Device struct {
	cid uint64
	uds string
	ln  *net.UnixListener

	connMu   sync.Mutex
	conns    map[connKey]*conn
	nextPort uint32
	closed   bool
	frozen   bool       // connections' pumps stay stopped (Freeze)
	handover []*os.File // host sockets saved by SaveState while frozen

	handshakes map[*net.UnixConn]struct{} // host connections before CONNECT

	rxMu     sync.Mutex
	rxq      []*rxItem
	refusals int // items in rxq without a connection
	rxWake   chan struct{}

	resetEvent atomic.Bool // send EventTransportReset
	eventWake  chan struct{}

	accepted, refused, badPackets, rxPackets, txPackets atomic.Uint64

	bg sync.WaitGroup // accept loop and connection goroutines

	mu      sync.Mutex
	workers virtio.Workers // rx, tx and event queue workers (mu)
}

// New returns a vsock device listening on opts.UDSPath.
func New(opts Options) (*Device, error) {
	if opts.CID < 3 || opts.CID >= 1<<32-1 {
		return nil, fmt.Errorf("%w: guest CID %d (3 to %d)", ErrOptions, opts.CID, uint64(1<<32-2))
	}
	if opts.UDSPath == "" {
		return nil, fmt.Errorf("%w: no Unix socket path", ErrOptions)
	}
	if _, err := os.Lstat(opts.UDSPath); err == nil {
		return nil, fmt.Errorf("%w: %s already exists (remove it if no VM uses it)", ErrOptions, opts.UDSPath)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: opts.UDSPath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("vsock: listen on %s: %w", opts.UDSPath, err)
	}
	d := &Device{
		cid: opts.CID, uds: opts.UDSPath, ln: ln,
		conns: map[connKey]*conn{}, nextPort: firstHostPort, handshakes: map[*net.UnixConn]struct{}{},
		rxWake: make(chan struct{}, 1), eventWake: make(chan struct{}, 1),
	}
	d.bg.Add(1)
	go d.acceptLoop()
	return d, nil
}

// CID is the guest's context ID.
func (d *Device) CID() uint64 { return d.cid }

// Close stops listening, closes every connection and removes the socket
// file. Reset the transport first.
func (d *Device) Close() error {
	d.connMu.Lock()
	d.closed = true
	for uc := range d.handshakes {
		uc.Close()
	}
	closeFiles(d.handover)
	d.handover = nil
	d.connMu.Unlock()
	err := d.ln.Close()
	d.dropAll()
	d.bg.Wait()
	return err
}

// Counters returns the activity counts.
func (d *Device) Counters() Counters {
	d.connMu.Lock()
	n := len(d.conns)
	d.connMu.Unlock()
	return Counters{
		Connections: uint64(n), Accepted: d.accepted.Load(), Refused: d.refused.Load(),
		BadPackets: d.badPackets.Load(), RxPackets: d.rxPackets.Load(), TxPackets: d.txPackets.Load(),
	}
}

// DeviceID implements virtio.Device.
func (d *Device) DeviceID() uint16 { return virtio.IDVsock }

// Features implements virtio.Device: stream sockets only, which need no
// feature bit (5.10.3).
func (d *Device) Features() uint64 { return virtio.CommonFeatures }

// QueueMaxSizes implements virtio.Device: rx, tx and event queues.
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{QueueSize, QueueSize, QueueSize} }

// ReadConfig implements virtio.Device: guest_cid (5.10.4).
func (d *Device) ReadConfig(offset uint64, data []byte) {
	var c [8]byte
	binary.LittleEndian.PutUint64(c[:], d.cid)
	for i := range data {
		data[i] = 0
		if o := offset + uint64(i); o < 8 {
			data[i] = c[o]
		}
	}
}

// WriteConfig implements virtio.Device; the configuration is read-only.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate implements virtio.Device: starts the queue workers. Queues set
// up anew (after a driver reset) mean the guest forgot its connections,
// so the device drops them too.
func (d *Device) Activate(ctx virtio.ActivateContext) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.workers.Active() {
		return fmt.Errorf("vsock: already active")
	}
	if len(ctx.Queues) < 3 {
		return fmt.Errorf("vsock: %d queues, need rx, tx and event", len(ctx.Queues))
	}
	fresh := true
	for _, q := range ctx.Queues[:2] {
		if q != nil {
			if s := q.SaveState(); s.LastAvail != 0 || s.NextUsed != 0 {
				fresh = false
			}
		}
	}
	if fresh {
		d.dropAll()
	}
	d.workers.Start()
	start := func(qi int, fn func(*virtio.ActivateContext, <-chan struct{})) {
		if ctx.Queues[qi] == nil {
			return
		}
		d.workers.Go(func(stop <-chan struct{}) { fn(&ctx, stop) })
	}
	start(QueueRx, d.serveRx)
	start(QueueTx, d.serveTx)
	start(QueueEvent, d.serveEvent)
	return nil
}

// Reset implements virtio.Device: stops the queue workers. Connections
// stay open until the queues are set up anew.
func (d *Device) Reset() { d.workers.Reset(&d.mu) }

// dropAll closes every connection without telling the guest, and
// forgets packets not yet delivered.
func (d *Device) dropAll() {
	d.connMu.Lock()
	all := d.connListLocked()
	d.connMu.Unlock()
	for _, c := range all {
		d.closeConn(c, false)
	}
	d.rxMu.Lock()
	d.rxq, d.refusals = nil, 0
	d.rxMu.Unlock()
}

// connListLocked returns the open connections; d.connMu is held.
func (d *Device) connListLocked() []*conn {
	all := make([]*conn, 0, len(d.conns))
	for _, c := range d.conns {
		all = append(all, c)
	}
	return all
}
