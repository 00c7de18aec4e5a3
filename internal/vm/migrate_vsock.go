package vm

import (
	"os"

	"github.com/govisor/govisor/internal/virtio/vsock"
)

// vsock connections across a live migration (virtio 1.2 5.10): their host
// ends are Unix sockets of the source VMM, so they survive only a migration
// to a VMM on the same host over a Unix socket, which passes the sockets on
// (migration.FileSource, migration.FileDestination). Otherwise the
// destination's device resets the guest's transport (5.10.6.6).

// vsockDevice returns the machine's vsock device, or nil.
func (m *Machine) vsockDevice() *vsock.Device {
	if d := m.devs.Get(vsockID); d != nil {
		v, _ := d.Dev.(*vsock.Device)
		return v
	}
	return nil
}

// freezeVsock stops data between the guest and the host sockets of the
// paused source, so that the saved state is exact and the sockets can move.
func (m *Machine) freezeVsock() {
	if d := m.vsockDevice(); d != nil {
		d.Freeze()
	}
}

// thawVsock lets vsock data flow again: on the source after a failed
// migration, on the destination once it owns the VM.
func (m *Machine) thawVsock() {
	if d := m.vsockDevice(); d != nil {
		d.Thaw()
	}
}

// HandoverFiles implements migration.FileSource: the host sockets of the
// vsock connections in the device state just sent.
func (s *migrationSource) HandoverFiles() ([]*os.File, error) {
	if d := s.m.vsockDevice(); d != nil {
		return d.HandoverFiles()
	}
	return nil, nil
}

// ReceiveFiles implements migration.FileDestination.
func (d *migrationDest) ReceiveFiles(files []*os.File) {
	d.mu.Lock()
	defer d.mu.Unlock()
	closeAll(d.files)
	d.files = files
}

// attachFiles hands the received sockets to the vsock state, which refers
// to them by index.
func (d *migrationDest) attachFiles(ms *migrationState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.files == nil {
		return
	}
	for i := range ms.Machine.Virtio {
		if v, ok := ms.Machine.Virtio[i].Device.(*vsock.State); ok {
			v.SetFiles(d.files)
		}
	}
}

// dropFiles closes the received sockets: a restored device holds its own
// duplicates.
func (d *migrationDest) dropFiles() {
	d.mu.Lock()
	defer d.mu.Unlock()
	closeAll(d.files)
	d.files = nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
