package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/vmmapi"
)

// maxGuestReboots is how many guest reboots one migration rides over: a
// guest that reboots again each time it is sent would keep it going for
// ever.
const maxGuestReboots = 3

// carryOut runs migration f to its end. A guest that reboots while it is
// being sent ends its VMM's migration (the VMM builds a new machine for
// the new boot); as with vMotion or QEMU, whose migrations carry on over a
// guest's reset, that is not the migration's failure: the rebooted guest
// is sent again, to a new receiving VMM.
func (g *migrator) carryOut(ctx context.Context, f *flight, s api.VMSpec) error {
	for reboots := 0; ; reboots++ {
		err := g.attempt(ctx, f, s)
		if err == nil || f.why != "" || reboots == maxGuestReboots || !guestRebooted(err) {
			return err
		}
		g.a.log.Info("the guest rebooted during its migration; sending it again", "vm", f.m.VM, "to", f.m.Destination, "err", err)
		f.ms.GuestReboots++
		g.a.setMigration(f.m.VM, f.p.PID, f.ms)
		if f.peer != nil {
			cctx, cancel := shortCtx()
			cerr := f.peer.CancelIncoming(cctx, f.m.VM)
			cancel()
			if cerr != nil {
				return fmt.Errorf("%w; the receiving VMM of that attempt could not be removed to send it again: %v", err, cerr)
			}
		}
		f.m.Addr, f.m.Disks = "", nil
		if !f.p.Alive() {
			return err
		}
	}
}

// guestRebooted reports whether a VMM's migration error says its guest
// rebooted (and runs on).
func guestRebooted(err error) bool {
	return strings.Contains(err.Error(), vmmapi.MigrateGuestRebooted)
}
