package node

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// TAPName is the host TAP device of a VM's NIC i: "gv" and 12 hex digits
// of a hash of the VM's name (device names have at most 15 characters, VM
// names up to 63), the same on every start so an adopted VMM keeps its TAP.
func TAPName(vm string, i int) string {
	h := sha256.Sum256([]byte(vm + "/" + strconv.Itoa(i)))
	return "gv" + hex.EncodeToString(h[:6])
}
