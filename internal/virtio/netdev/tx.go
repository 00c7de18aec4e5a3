package netdev

// transmit sends the frame in one transmit chain (5.1.6.2): the driver's
// header and frame go to the backend as they are, gathered from the
// guest's buffers without copying. Bad frames are dropped and counted.
func (d *Device) transmit(pair int, features uint64, c *virtqueueChain, hdr *[HeaderSize]byte) {
	n := c.ReadLen
	if n < HeaderSize+minFrame || n > HeaderSize+MaxFrame || len(c.Readable) > maxSegments {
		d.txDrops.Add(1)
		return
	}
	c.ReadAt(hdr[:], 0)
	if !validTx(ParseHeader(hdr[:]), features, int(n-HeaderSize)) {
		d.txDrops.Add(1)
		return
	}
	if _, err := d.bes[pair].WriteFrame(c.Readable); err != nil {
		d.txDrops.Add(1)
		return
	}
	d.txPackets.Add(1)
	d.txBytes.Add(n - HeaderSize)
}

// maxSegments is writev's limit (UIO_MAXIOV).
const maxSegments = 1024
