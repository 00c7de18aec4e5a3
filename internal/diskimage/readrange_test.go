package diskimage_test

import (
	"io"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
)

func TestClipRead(t *testing.T) {
	p := make([]byte, 8)
	for _, tc := range []struct {
		n         int
		off, size int64
		want      int
		err       error
	}{
		{8, 0, 16, 8, nil},     // inside
		{8, 12, 16, 4, io.EOF}, // runs past the end
		{8, 16, 16, 0, io.EOF}, // at the end
		{0, 16, 16, 0, nil},    // empty, at the end
		{0, 17, 16, 0, io.EOF},
		{8, -1, 16, 0, io.EOF},
		{0, -1, 16, 0, io.EOF},
		{0, 3, 16, 0, nil},
		{8, 0, 0, 0, io.EOF}, // an empty disk
	} {
		got, err := diskimage.ClipRead(p[:tc.n], tc.off, tc.size)
		if len(got) != tc.want || err != tc.err {
			t.Errorf("ClipRead(%d bytes, %d, %d) = %d bytes, %v; want %d, %v", tc.n, tc.off, tc.size, len(got), err, tc.want, tc.err)
		}
	}
}
