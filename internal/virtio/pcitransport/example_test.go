package pcitransport_test

import (
	"fmt"

	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/pcitransport/pcitest"
	"github.com/govisor/govisor/internal/virtio/rng"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

// A VMM creates the device, wraps it in a transport with its platform
// (MMIO bus, KVM_SIGNAL_MSI, KVM_IOEVENTFD) and plugs it into a PCI slot;
// the guest's BAR programming then maps it.
func Example() {
	mem := virtqueuetest.NewMemory(0, 1<<20) // the VMM passes guest RAM with MarkDirty
	plat := pcitest.NewPlatform()            // the VMM passes its KVM-backed Platform
	tr, err := pcitransport.New(rng.New(), mem, plat)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tr.Close()
	bus := pci.NewBus(nil)
	if err := bus.AddDevice(1, tr); err != nil {
		fmt.Println(err)
		return
	}
	id := make([]byte, 4)
	bus.ConfigRead(1, 0, pci.RegVendorID, id)
	fmt.Printf("%02x%02x:%02x%02x\n", id[1], id[0], id[3], id[2])
	// Output: 1af4:1044
}
