package blk

import "encoding/binary"

// Feature bits (5.2.3).
const (
	FeatureSizeMax     = 1 << 1
	FeatureSegMax      = 1 << 2
	FeatureRO          = 1 << 5
	FeatureBlkSize     = 1 << 6
	FeatureFlush       = 1 << 9
	FeatureTopology    = 1 << 10
	FeatureMQ          = 1 << 12
	FeatureDiscard     = 1 << 13
	FeatureWriteZeroes = 1 << 14
)

// Request types (5.2.6).
const (
	TypeIn          = 0
	TypeOut         = 1
	TypeFlush       = 4
	TypeGetID       = 8
	TypeDiscard     = 11
	TypeWriteZeroes = 13
)

// Request status values (5.2.6).
const (
	StatusOK     = 0
	StatusIOErr  = 1
	StatusUnsupp = 2
)

// Sizes the protocol fixes.
const (
	SectorSize = 512 // request sectors are always 512 bytes (5.2.6)
	IDBytes    = 20  // VIRTIO_BLK_ID_BYTES
	headerSize = 16  // struct virtio_blk_req: type, reserved, sector
	segSize    = 16  // struct virtio_blk_discard_write_zeroes
	flagUnmap  = 1
)

// Limits the device advertises for discard and write-zeroes.
const (
	MaxDiscardSectors     = 1 << 23 // 4 GiB per segment
	MaxWriteZeroesSectors = 1 << 23
	maxSegments           = 1
	// MaxTransfer bounds one read or write request, so that one request
	// cannot hold a queue for long and used lengths fit in 32 bits.
	MaxTransfer = 1 << 30
)

// Configuration layout (struct virtio_blk_config, 5.2.4).
const (
	cfgCapacity              = 0
	cfgSizeMax               = 8
	cfgSegMax                = 12
	cfgBlkSize               = 20
	cfgPhysBlockExp          = 24
	cfgMinIOSize             = 26
	cfgOptIOSize             = 28
	cfgNumQueues             = 34
	cfgMaxDiscardSectors     = 36
	cfgMaxDiscardSeg         = 40
	cfgDiscardAlignment      = 44
	cfgMaxWriteZeroesSectors = 48
	cfgMaxWriteZeroesSeg     = 52
	cfgWriteZeroesMayUnmap   = 56
	configSize               = 60
)

// buildConfig lays out the configuration space for d.
func (d *Device) buildConfig() {
	c := d.config[:]
	le := binary.LittleEndian
	le.PutUint64(c[cfgCapacity:], d.capacity)
	le.PutUint32(c[cfgSegMax:], uint32(d.queueSize)-2)
	le.PutUint32(c[cfgBlkSize:], d.blockSize)
	c[cfgPhysBlockExp] = 0            // physical block = logical block
	le.PutUint16(c[cfgMinIOSize:], 1) // in logical blocks
	le.PutUint16(c[cfgNumQueues:], uint16(d.numQueues))
	le.PutUint32(c[cfgMaxDiscardSectors:], MaxDiscardSectors)
	le.PutUint32(c[cfgMaxDiscardSeg:], maxSegments)
	le.PutUint32(c[cfgDiscardAlignment:], d.blockSize/SectorSize)
	le.PutUint32(c[cfgMaxWriteZeroesSectors:], MaxWriteZeroesSectors)
	le.PutUint32(c[cfgMaxWriteZeroesSeg:], maxSegments)
	if d.discarder != nil {
		c[cfgWriteZeroesMayUnmap] = 1
	}
}
