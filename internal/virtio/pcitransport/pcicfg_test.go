package pcitransport_test

import (
	"testing"

	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/snapshot"
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/pcitransport/pcitest"
	"github.com/govisor/govisor/internal/virtio/rng"
)

// TestPCICfgCapability checks the capability's layout (virtio 1.2
// 4.1.4.9): cap_len 20, cfg_type 5, and which fields the driver may write.
func TestPCICfgCapability(t *testing.T) {
	r := newRig(t, false)
	c := r.drv.PCICfgCap
	if c == 0 {
		t.Fatal("no VIRTIO_PCI_CAP_PCI_CFG capability")
	}
	cs := r.tr.Config()
	if cs.U8(c) != 0x09 || cs.U8(c+2) != 20 || cs.U8(c+3) != 5 {
		t.Fatalf("capability header % x", []byte{cs.U8(c), cs.U8(c + 1), cs.U8(c + 2), cs.U8(c + 3)})
	}
	// cap_len and cfg_type are read-only; bar, offset, length are not.
	r.tr.ConfigWrite(c+2, []byte{0x55, 0x66})
	r.drv.SelectWindow(0, 0x14, 1)
	if cs.U8(c+2) != 20 || cs.U8(c+3) != 5 {
		t.Fatal("cap_len or cfg_type writable")
	}
	if cs.U8(c+4) != 0 || cs.U32(c+8) != 0x14 || cs.U32(c+12) != 1 {
		t.Fatalf("bar/offset/length %d/%#x/%d", cs.U8(c+4), cs.U32(c+8), cs.U32(c+12))
	}
}

// TestPCICfgWindow drives BAR registers through pci_cfg_data (4.1.4.9.1)
// and checks what the device does with selections a driver must not make
// (4.1.4.9.2): they reach nothing.
func TestPCICfgWindow(t *testing.T) {
	const common = 0 // the common configuration's BAR offset (4.1.4.3)
	tests := []struct {
		name    string
		bar     uint8
		off     uint32
		length  uint32
		width   int    // configuration access width on pci_cfg_data
		write   uint64 // written through the window first, if set
		want    uint64 // pci_cfg_data read back
		status  uint8  // device_status afterwards, read through the BAR
		feature bool   // want is the device_feature low word
	}{
		{name: "read status byte", off: 0x14, length: 1, width: 1, want: virtio.StatusAcknowledge, status: virtio.StatusAcknowledge},
		{name: "write status byte", off: 0x14, length: 1, width: 1, write: virtio.StatusAcknowledge | virtio.StatusDriver,
			want: virtio.StatusAcknowledge | virtio.StatusDriver, status: virtio.StatusAcknowledge | virtio.StatusDriver},
		{name: "read num_queues word", off: 0x12, length: 2, width: 2, want: 1, status: virtio.StatusAcknowledge},
		{name: "read device_feature dword", off: 0x04, length: 4, width: 4, feature: true, status: virtio.StatusAcknowledge},
		{name: "dword access of a byte window", off: 0x14, length: 1, width: 4, want: virtio.StatusAcknowledge, status: virtio.StatusAcknowledge},
		{name: "length 3 ignored", off: 0x14, length: 3, width: 1, write: 0, want: 0xEE, status: virtio.StatusAcknowledge},
		{name: "length 8 ignored", off: 0x10, length: 8, width: 1, want: 0xEE, status: virtio.StatusAcknowledge},
		{name: "misaligned ignored", off: 0x13, length: 2, width: 2, want: 0xEE, status: virtio.StatusAcknowledge},
		{name: "upper half of the 64-bit BAR ignored", bar: 1, off: 0x14, length: 1, width: 1, want: 0xEE, status: virtio.StatusAcknowledge},
		{name: "absent BAR ignored", bar: 2, off: 0x14, length: 1, width: 1, want: 0xEE, status: virtio.StatusAcknowledge},
		{name: "past the BAR ignored", off: pcitransport.BARSize, length: 4, width: 4, want: 0xEE, status: virtio.StatusAcknowledge},
		{name: "write past the BAR ignored", off: pcitransport.BARSize - 2, length: 4, width: 1, write: 0x7F, want: 0x7F, status: virtio.StatusAcknowledge},
		{name: "misaligned write ignored", off: 0x15, length: 2, width: 2, write: 0x0303, want: 0x0303, status: virtio.StatusAcknowledge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, false)
			r.drv.SetStatus(virtio.StatusAcknowledge)
			// A marker in pci_cfg_data shows whether a read reached the BAR.
			r.drv.SelectWindow(0, 0, 0)
			r.drv.WindowWrite(4, 0xEE)
			r.drv.SelectWindow(tc.bar, common+tc.off, tc.length)
			if tc.write != 0 {
				r.drv.WindowWrite(tc.width, tc.write)
			}
			want := tc.want
			if tc.feature {
				r.drv.SetCommon(0x00, 4, 0)
				want = r.drv.Common(0x04, 4)
			}
			if got := r.drv.WindowRead(tc.width); got != want {
				t.Errorf("pci_cfg_data %#x, want %#x", got, want)
			}
			if got := r.drv.Status(); got != tc.status {
				t.Errorf("device_status %#x, want %#x", got, tc.status)
			}
		})
	}
}

// TestPCICfgWindowISR reads the ISR through the window: like a BAR read
// it returns and clears the status (4.1.4.5).
func TestPCICfgWindowISR(t *testing.T) {
	r := newRig(t, false)
	r.tr.ConfigChanged()
	r.drv.SelectWindow(0, uint32(r.drv.Regions[3]), 1)
	if got := r.drv.WindowRead(1); got&2 == 0 {
		t.Fatalf("ISR %#x through the window after a config change", got)
	}
	if got := r.drv.ISR(); got != 0 {
		t.Fatalf("ISR %#x not cleared by the window read", got)
	}
}

// TestPCICfgWindowDrivesDevice initialises the device through the BAR and
// then runs a request while reading its registers only through the
// window, as SeaBIOS's driver does with a BAR above 4 GiB.
func TestPCICfgWindowDrivesDevice(t *testing.T) {
	r := newRig(t, false)
	if err := r.drv.Init(allFeatures, 1, 0); err != nil {
		t.Fatal(err)
	}
	if got := r.drv.CommonViaWindow(0x14, 1); got&virtio.StatusDriverOK == 0 {
		t.Fatalf("device_status %#x through the window", got)
	}
	if got := r.drv.CommonViaWindow(0x18, 2); got == 0 {
		t.Fatal("queue_size 0 through the window")
	}
	if n, _ := r.request(t, 16); n != 16 {
		t.Fatalf("used len %d", n)
	}
}

// TestPCICfgSaveRestore checks that the window the driver selected
// survives a snapshot's encoding and a restore into a new transport, and
// that a state saved before the capability existed (its bytes zero)
// still restores.
func TestPCICfgSaveRestore(t *testing.T) {
	r := newRig(t, false)
	r.drv.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
	r.drv.SelectWindow(0, uint32(r.drv.Regions[1])+0x14, 1)
	s := r.tr.SaveState()
	e := snapshot.NewEncoder(nil)
	s.Encode(e)
	var got pcitransport.State
	if err := got.Decode(snapshot.NewDecoder(e.Bytes())); err != nil {
		t.Fatal(err)
	}
	r.tr.Close()
	r.tr.Config().ConfigWrite(pci.RegCommand, []byte{0, 0})

	plat2 := pcitest.NewPlatform()
	tr2, err := pcitransport.New(rng.New(), r.mem, plat2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr2.Close)
	if err := tr2.RestoreState(got); err != nil {
		t.Fatal(err)
	}
	r.drv.Dev, r.drv.Plat = tr2, plat2
	// No new selection: the restored one is used.
	if v := r.drv.WindowRead(1); v != virtio.StatusAcknowledge|virtio.StatusDriver {
		t.Fatalf("device_status %#x through the restored window", v)
	}

	// An older state: nothing after the MSI-X capability.
	old := s
	for i := int(r.drv.PCICfgCap); i < len(old.Config.Data); i++ {
		old.Config.Data[i] = 0
	}
	plat3 := pcitest.NewPlatform()
	tr3, err := pcitransport.New(rng.New(), r.mem, plat3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr3.Close)
	tr2.Close()
	tr2.Config().ConfigWrite(pci.RegCommand, []byte{0, 0})
	if err := tr3.RestoreState(old); err != nil {
		t.Fatal(err)
	}
	r.drv.Dev, r.drv.Plat = tr3, plat3
	if v := r.drv.Status(); v != virtio.StatusAcknowledge|virtio.StatusDriver {
		t.Fatalf("device_status %#x after restoring an older state", v)
	}
}
