package cli

import "testing"

func TestMigrateRequestUnixPathAbsolute(t *testing.T) {
	var f migrateFlags
	req, err := f.request("unix:vm.migrate")
	if err != nil {
		t.Fatal(err)
	}
	if want := "unix:" + abs(t, "vm.migrate"); req.To != want {
		t.Fatalf("To = %q, want %q", req.To, want)
	}
	if _, err := (&migrateFlags{}).request("nowhere"); err == nil {
		t.Fatal("a destination without a port was accepted")
	}
}
