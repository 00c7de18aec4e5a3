package cli

import "testing"

func TestParseDeviceFlags(t *testing.T) {
	good := []string{"tap=tap0", "tap=gv1,mac=02:00:00:00:00:01"}
	for _, s := range good {
		if _, err := ParseNet(s); err != nil {
			t.Errorf("ParseNet(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "mac=02:00:00:00:00:01", "tap=x,mac=zz", "tap=waytoolongforalinuxiface", "tap=t,speed=10"} {
		if _, err := ParseNet(s); err == nil {
			t.Errorf("ParseNet(%q) accepted", s)
		}
	}
	if v, err := ParseVsock("cid=3,uds=/run/v.sock"); err != nil || v.CID != 3 || v.UDS != "/run/v.sock" {
		t.Errorf("ParseVsock: %+v %v", v, err)
	}
	for _, s := range []string{"cid=2,uds=/x", "cid=3", "uds=/x", "cid=x,uds=/x", "cid=3,uds=/x,port=1"} {
		if _, err := ParseVsock(s); err == nil {
			t.Errorf("ParseVsock(%q) accepted", s)
		}
	}
	for _, s := range []string{"path=/nonexistent/disk.img", "", "path=/dev/null,frob", "path=/dev/null,queues=99"} {
		if _, err := ParseDisk(s); err == nil {
			t.Errorf("ParseDisk(%q) accepted", s)
		}
	}
	if d, err := ParseDisk("path=/dev/null,readonly,serial=abc,queues=2"); err != nil || !d.ReadOnly || d.Serial != "abc" || d.Queues != 2 {
		t.Errorf("ParseDisk: %+v %v", d, err)
	}
}
