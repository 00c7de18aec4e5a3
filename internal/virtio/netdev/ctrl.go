package netdev

// Control queue classes, commands and acks (5.1.6.5).
const (
	CtrlClassAnnounce = 3
	CtrlClassMQ       = 4

	CtrlAnnounceAck   = 0
	CtrlMQVQPairsSet  = 0
	CtrlOK            = 0
	CtrlErr           = 1
	ctrlHeaderSize    = 2 // class, command
	ctrlMaxDataLength = 64
)

// control runs one control command and writes its ack (5.1.6.5): the
// number of queue pairs in use (MQ) and the announce acknowledgement.
// Anything else is refused with an error ack.
func (d *Device) control(features uint64, pairs int, c *virtqueueChain) uint32 {
	if c.WriteLen < 1 {
		return 0
	}
	ack := byte(CtrlErr)
	var buf [ctrlHeaderSize + ctrlMaxDataLength]byte
	n, _ := c.ReadAt(buf[:min(c.ReadLen, uint64(len(buf)))], 0)
	if n >= ctrlHeaderSize {
		data := buf[ctrlHeaderSize:n]
		switch {
		case buf[0] == CtrlClassMQ && buf[1] == CtrlMQVQPairsSet && features&FeatureMQ != 0 && len(data) >= 2:
			if want := int(data[0]) | int(data[1])<<8; want >= 1 && want <= pairs && d.setActive(want) == nil {
				ack = CtrlOK
			}
		case buf[0] == CtrlClassAnnounce && buf[1] == CtrlAnnounceAck && features&FeatureAnnounce != 0:
			d.announce.Store(false)
			ack = CtrlOK
		}
	}
	c.WriteAt([]byte{ack}, 0)
	return 1
}

// setActive records the pairs the driver uses and enables their backends.
func (d *Device) setActive(n int) error {
	// Not d.mu: Reset holds it while it waits for this worker.
	d.activeMu.Lock()
	defer d.activeMu.Unlock()
	if err := d.enableQueues(n); err != nil {
		return err
	}
	d.active = n
	return nil
}
