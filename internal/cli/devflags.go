package cli

// The device flags of govisor run, parsed into the VMM's config.

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// ParseNet parses a --net value: tap=NAME[,mac=MAC].
func ParseNet(s string) (vmmconfig.Net, error) {
	var n vmmconfig.Net
	for _, part := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "tap":
			n.TAP = v
		case "mac":
			if _, err := net.ParseMAC(v); err != nil {
				return n, fmt.Errorf("--net %q: mac=%s is not a MAC address (use aa:bb:cc:dd:ee:ff)", s, v)
			}
			n.MAC = v
		default:
			return n, fmt.Errorf("--net %q: unknown option %q: use tap=NAME[,mac=MAC]", s, part)
		}
	}
	if n.TAP == "" || len(n.TAP) > 15 {
		return n, fmt.Errorf("--net %q: give the TAP device as tap=NAME (at most 15 characters)", s)
	}
	return n, nil
}

// ParseVsock parses a --vsock value: cid=N,uds=PATH.
func ParseVsock(s string) (*vmmconfig.Vsock, error) {
	v := &vmmconfig.Vsock{}
	for _, part := range strings.Split(s, ",") {
		k, val, _ := strings.Cut(part, "=")
		switch k {
		case "cid":
			cid, err := strconv.ParseUint(val, 10, 32)
			if err != nil || cid < 3 {
				return nil, fmt.Errorf("--vsock %q: cid=%s: give a context ID of 3 or more", s, val)
			}
			v.CID = cid
		case "uds":
			v.UDS = val
		default:
			return nil, fmt.Errorf("--vsock %q: unknown option %q: use cid=N,uds=PATH", s, part)
		}
	}
	if v.CID == 0 || v.UDS == "" {
		return nil, fmt.Errorf("--vsock %q: give both cid=N and uds=PATH", s)
	}
	return v, nil
}

// ParseDisk parses a --disk value: path=FILE[,readonly][,direct][,format=F][,serial=S][,queues=N].
// A bare FILE is accepted as the path.
func ParseDisk(s string) (vmmconfig.Disk, error) {
	var d vmmconfig.Disk
	for i, part := range strings.Split(s, ",") {
		k, v, hasValue := strings.Cut(part, "=")
		switch {
		case k == "path" && hasValue:
			d.Path = v
		case i == 0 && !hasValue:
			d.Path = k
		case (k == "readonly" || k == "ro") && (!hasValue || v == "on" || v == "true"):
			d.ReadOnly = true
		case k == "direct" && (!hasValue || v == "on" || v == "true"):
			d.Direct = true
		case k == "lease" && (!hasValue || v == "on" || v == "true"):
			d.Lease = true
		case k == "format" && hasValue:
			d.Format = v
		case k == "serial" && hasValue:
			d.Serial = v
		case k == "queues" && hasValue:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 16 {
				return d, fmt.Errorf("--disk %q: queues=%s: give 1 to 16", s, v)
			}
			d.Queues = n
		default:
			return d, fmt.Errorf("--disk %q: unknown option %q: use path=FILE[,readonly][,direct][,lease][,format=FMT][,serial=ID][,queues=N]", s, part)
		}
	}
	if d.Path == "" {
		return d, fmt.Errorf("--disk %q: no path: use path=FILE", s)
	}
	if _, err := os.Stat(d.Path); err != nil {
		return d, fmt.Errorf("--disk %q: %w", s, err)
	}
	return d, nil
}
