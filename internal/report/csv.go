package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"
)

// CSVHeader is the first line of WriteCSV's output. The host's own rows
// have an empty vm column; I/O columns are empty where the VMM did not
// report counters.
var CSVHeader = []string{"time", "host", "vm", "cpu_percent", "memory_bytes",
	"disk_read_bytes_per_s", "disk_write_bytes_per_s", "net_rx_bytes_per_s", "net_tx_bytes_per_s"}

// WriteCSV writes one line per row: its end time (RFC 3339, UTC), names,
// CPU %, resident memory and I/O rates.
func WriteCSV(w io.Writer, rows []Row) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return fmt.Errorf("report: write CSV: %w", err)
	}
	rate := func(r Row, v float64) string {
		if !r.HasIO {
			return ""
		}
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	for _, r := range rows {
		rec := []string{
			r.End.UTC().Format(time.RFC3339), r.Host, r.VM,
			strconv.FormatFloat(r.CPUPercent, 'f', 2, 64),
			strconv.FormatUint(r.MemoryBytes, 10),
			rate(r, r.DiskReadBps), rate(r, r.DiskWriteBps), rate(r, r.NetRxBps), rate(r, r.NetTxBps),
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("report: write CSV: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("report: write CSV: %w", err)
	}
	return nil
}
