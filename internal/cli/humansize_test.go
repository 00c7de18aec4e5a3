package cli

import "testing"

func TestHumanSize(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1 KiB"},
		{40 << 10, "40 KiB"},
		{1000 << 10, "1000 KiB"},
		{1536, "1.5 KiB"},
		{20 << 30, "20 GiB"},
		{(1 << 30) + (1 << 20), "1 GiB"},
		{5 << 20 / 3, "1.67 MiB"},
	} {
		if got := humanSize(c.n); got != c.want {
			t.Errorf("humanSize(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}
