package balloon

import (
	"encoding/binary"
	"time"

	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

// Statistic tags (5.5.6.3).
const (
	TagSwapIn          = 0
	TagSwapOut         = 1
	TagMajorFaults     = 2
	TagMinorFaults     = 3
	TagFreeMemory      = 4
	TagTotalMemory     = 5
	TagAvailableMemory = 6
	TagDiskCaches      = 7
	TagHugetlbAllocs   = 8
	TagHugetlbFailures = 9
)

// statSize is struct virtio_balloon_stat: le16 tag, le64 val, packed.
const statSize = 10

// maxStats bounds the entries parsed from one buffer.
const maxStats = 64

// Stats are the guest's memory statistics as last reported; memory
// amounts are in bytes. A statistic the guest did not report is zero.
type Stats struct {
	SwapIn, SwapOut          uint64 // bytes swapped in and out
	MajorFaults, MinorFaults uint64
	FreeMemory               uint64 // unused memory
	TotalMemory              uint64
	AvailableMemory          uint64 // free plus reclaimable, as /proc/meminfo MemAvailable
	DiskCaches               uint64
	HugetlbAllocations       uint64
	HugetlbFailures          uint64
	// Updated is when the guest sent them; zero if it never did.
	Updated time.Time
}

// Stats returns the statistics the guest last reported.
func (d *Device) Stats() Stats {
	d.statsMu.Lock()
	defer d.statsMu.Unlock()
	return d.stats
}

// ParseStats decodes a stats buffer (an array of tag/value pairs) into s;
// unknown tags are ignored and a trailing partial entry is dropped.
func ParseStats(buf []byte, s *Stats) {
	for i := 0; i+statSize <= len(buf) && i < maxStats*statSize; i += statSize {
		s.set(binary.LittleEndian.Uint16(buf[i:]), binary.LittleEndian.Uint64(buf[i+2:]))
	}
}

func (s *Stats) set(tag uint16, v uint64) {
	switch tag {
	case TagSwapIn:
		s.SwapIn = v
	case TagSwapOut:
		s.SwapOut = v
	case TagMajorFaults:
		s.MajorFaults = v
	case TagMinorFaults:
		s.MinorFaults = v
	case TagFreeMemory:
		s.FreeMemory = v
	case TagTotalMemory:
		s.TotalMemory = v
	case TagAvailableMemory:
		s.AvailableMemory = v
	case TagDiskCaches:
		s.DiskCaches = v
	case TagHugetlbAllocs:
		s.HugetlbAllocations = v
	case TagHugetlbFailures:
		s.HugetlbFailures = v
	}
}

// parseStats reads the statistics in c's readable part.
func (d *Device) parseStats(c *virtqueue.Chain) {
	var buf [maxStats * statSize]byte
	n := min(uint64(len(buf)), c.ReadLen)
	c.ReadAt(buf[:n], 0)
	var s Stats
	ParseStats(buf[:n], &s)
	s.Updated = time.Now()
	d.statsMu.Lock()
	d.stats = s
	d.statsMu.Unlock()
}
