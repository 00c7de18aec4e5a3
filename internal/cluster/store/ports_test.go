package store

import "testing"

// TestFreePortsDiffer: the two etcd ports are never the same port, however
// often the kernel would hand a just-closed port out again.
func TestFreePortsDiffer(t *testing.T) {
	for range 200 {
		p, err := freePorts(2)
		if err != nil {
			t.Fatal(err)
		}
		if p[0] == p[1] || p[0] <= 0 || p[1] <= 0 {
			t.Fatalf("ports %v", p)
		}
	}
}
