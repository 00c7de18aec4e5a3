// Package balloon is the virtio memory balloon (virtio 1.2 section 5.5):
// the host sets a target number of pages, the guest driver gives pages
// back on the inflate queue (their host memory is released with
// madvise(MADV_DONTNEED)) and takes them again on the deflate queue, and
// reports memory statistics on the stats queue.
package balloon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govisor/govisor/internal/virtio"
)

// Feature bits (5.5.3).
const (
	FeatureMustTellHost = 1 << 0
	FeatureStatsVQ      = 1 << 1
	FeatureDeflateOnOOM = 1 << 2
)

// Queue indices (5.5.2).
const (
	QueueInflate = 0
	QueueDeflate = 1
	QueueStats   = 2
)

// PageSize is the unit of the balloon's page frame numbers: always 4 KiB,
// whatever the guest's page size (5.5.6).
const PageSize = 4096

// QueueSize is each queue's maximum size.
const QueueSize = 256

// configSize is struct virtio_balloon_config up to actual (5.5.4); the
// free page hint and poison fields need features not offered.
const configSize = 8

// Options configures a balloon.
type Options struct {
	// DeflateOnOOM offers VIRTIO_BALLOON_F_DEFLATE_ON_OOM: the guest may
	// take pages back from the balloon when it runs out of memory.
	DeflateOnOOM bool
	// StatsInterval, if not zero, asks the guest for fresh statistics this
	// often (the guest must have negotiated VIRTIO_BALLOON_F_STATS_VQ).
	StatsInterval time.Duration
}

// ErrOptions reports unusable options.
var ErrOptions = errors.New("balloon: invalid options")

// Device is a virtio-balloon device.
type Device struct {
	features uint64
	interval time.Duration

	target atomic.Uint32 // num_pages, set by the host
	actual atomic.Uint32 // actual, written by the driver

	notifyMu sync.Mutex
	notify   func() // raises a configuration change interrupt

	inflated, deflated, badPFNs, releaseErrors atomic.Uint64

	statsMu sync.Mutex
	stats   Stats

	requests chan struct{} // stats requests for the stats worker

	mu        sync.Mutex
	workers   virtio.Workers // inflate, deflate and stats queue workers (mu)
	statsHeld bool           // the stats worker holds the driver's stats buffer
	statsHead uint16         // ... whose head is this
}

// New returns a balloon device with a target of zero pages.
func New(opts Options) (*Device, error) {
	if opts.StatsInterval < 0 {
		return nil, fmt.Errorf("%w: negative stats interval", ErrOptions)
	}
	d := &Device{
		features: virtio.CommonFeatures | FeatureStatsVQ,
		interval: opts.StatsInterval,
		requests: make(chan struct{}, 1),
	}
	if opts.DeflateOnOOM {
		d.features |= FeatureDeflateOnOOM
	}
	return d, nil
}

// SetConfigNotifier sets the function that tells the driver the
// configuration changed, e.g. (*pcitransport.Transport).ConfigChanged;
// SetTarget calls it.
func (d *Device) SetConfigNotifier(fn func()) {
	d.notifyMu.Lock()
	d.notify = fn
	d.notifyMu.Unlock()
}

// SetTarget sets the number of 4 KiB pages the guest should give to the
// balloon and signals a configuration change (5.5.6).
func (d *Device) SetTarget(pages uint32) {
	if d.target.Swap(pages) == pages {
		return
	}
	d.notifyMu.Lock()
	fn := d.notify
	d.notifyMu.Unlock()
	if fn != nil {
		fn()
	}
}

// Target returns the number of pages the host asked for.
func (d *Device) Target() uint32 { return d.target.Load() }

// Actual returns the number of pages the driver says the balloon holds.
func (d *Device) Actual() uint32 { return d.actual.Load() }

// Counters are the balloon's activity counts, for metrics.
type Counters struct {
	Inflated      uint64 // pages received on the inflate queue
	Deflated      uint64 // pages received on the deflate queue
	BadPFNs       uint64 // page numbers outside guest RAM
	ReleaseErrors uint64 // madvise failures
}

// Counters returns the activity counts.
func (d *Device) Counters() Counters {
	return Counters{Inflated: d.inflated.Load(), Deflated: d.deflated.Load(), BadPFNs: d.badPFNs.Load(), ReleaseErrors: d.releaseErrors.Load()}
}

// DeviceID implements virtio.Device.
func (d *Device) DeviceID() uint16 { return virtio.IDBalloon }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return d.features }

// QueueMaxSizes implements virtio.Device: inflate, deflate and stats
// queues (the driver enables the last only with STATS_VQ).
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{QueueSize, QueueSize, QueueSize} }

func (d *Device) config() [configSize]byte {
	var c [configSize]byte
	binary.LittleEndian.PutUint32(c[0:], d.target.Load())
	binary.LittleEndian.PutUint32(c[4:], d.actual.Load())
	return c
}

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	c := d.config()
	for i := range data {
		data[i] = 0
		if o := offset + uint64(i); o < configSize {
			data[i] = c[o]
		}
	}
}

// WriteConfig implements virtio.Device: the driver may write actual
// (5.5.6); everything else is read-only.
func (d *Device) WriteConfig(offset uint64, data []byte) {
	if offset < 4 || offset >= configSize || offset+uint64(len(data)) > configSize {
		return
	}
	c := d.config()
	copy(c[offset:], data)
	d.actual.Store(binary.LittleEndian.Uint32(c[4:]))
}
