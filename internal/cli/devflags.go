package cli

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/govisor/govisor/internal/vm"
)

// ParseNet parses a --net value: tap=NAME[,mac=MAC].
func ParseNet(s string) (vm.Net, error) {
	var n vm.Net
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
func ParseVsock(s string) (*vm.Vsock, error) {
	v := &vm.Vsock{}
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
