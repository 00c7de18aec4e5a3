package migration

import (
	"context"
	"testing"
)

// BenchmarkSendLoopback migrates an idle 256 MiB guest (half its pages
// non-zero) over loopback TCP; bytes/s counts guest RAM moved.
func BenchmarkSendLoopback(b *testing.B) {
	for _, compress := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "s2"}[compress]
		b.Run(name, func(b *testing.B) {
			regions := []Region{{GPA: 0, Size: 256 << 20}}
			v := newFakeVM(1, regions)
			d := newFakeDest(regions)
			b.SetBytes(int64(regions[0].Size))
			for range b.N {
				v.paused = false
				sc, dc := connPair(b, true)
				rc := make(chan error, 1)
				go func() {
					_, err := Receive(context.Background(), dc, memOnlyDest{d})
					rc <- err
				}()
				st, err := Send(context.Background(), sc, v, Options{Compress: compress})
				if err != nil {
					b.Fatal(err)
				}
				if err := <-rc; err != nil {
					b.Fatal(err)
				}
				sc.Close()
				dc.Close()
				b.ReportMetric(float64(st.BytesSent)/float64(regions[0].Size), "wire/ram")
				b.ReportMetric(float64(st.Downtime.Microseconds()), "downtime-µs")
			}
		})
	}
}
