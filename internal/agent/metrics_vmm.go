package agent

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/govisor/govisor/internal/vmmapi"
)

// Per-VM figures only the VMM knows, read from its GET /stats at scrape
// time: KVM exits by reason, and the virtio disks' and NICs' counters.
var (
	descExits    = prometheus.NewDesc("govisor_vm_exits_total", "KVM exits of the VM's vCPUs to the VMM, by exit reason.", []string{"vm", "reason"}, nil)
	descEmulated = prometheus.NewDesc("govisor_vm_emulated_instructions_total", "Instructions the VMM completed after a KVM emulation failure (kvm_pvm hosts).", []string{"vm"}, nil)
	descDiskOps  = prometheus.NewDesc("govisor_vm_disk_ops_total", "virtio-blk requests completed, by disk and operation.", []string{"vm", "disk", "op"}, nil)
	descDiskB    = prometheus.NewDesc("govisor_vm_disk_bytes_total", "Bytes read from or written to the VM's disks.", []string{"vm", "disk", "op"}, nil)
	descDiskLat  = prometheus.NewDesc("govisor_vm_disk_latency_seconds_total", "Time virtio-blk requests spent in the VMM, by disk and operation (divide by govisor_vm_disk_ops_total for the mean).", []string{"vm", "disk", "op"}, nil)
	descDiskErr  = prometheus.NewDesc("govisor_vm_disk_errors_total", "virtio-blk requests that failed with an I/O error.", []string{"vm", "disk"}, nil)
	descNetPkts  = prometheus.NewDesc("govisor_vm_net_packets_total", "Frames through the VM's virtio-net interfaces, by TAP and direction.", []string{"vm", "nic", "dir"}, nil)
	descNetB     = prometheus.NewDesc("govisor_vm_net_bytes_total", "Bytes through the VM's virtio-net interfaces, by TAP and direction.", []string{"vm", "nic", "dir"}, nil)
	descNetDrops = prometheus.NewDesc("govisor_vm_net_drops_total", "Frames dropped on the VM's virtio-net interfaces, by TAP and direction.", []string{"vm", "nic", "dir"}, nil)
)

var vmmDescs = []*prometheus.Desc{descExits, descEmulated, descDiskOps, descDiskB, descDiskLat, descDiskErr, descNetPkts, descNetB, descNetDrops}

// statsTimeout bounds each VMM's answer during a scrape: a hung VMM loses
// its figures, not the scrape.
const statsTimeout = 2 * time.Second

// collectVMMStats asks every VMM of vmms (name -> VMM API) for its
// counters, in parallel, and emits them.
func collectVMMStats(ch chan<- prometheus.Metric, vmms map[string]*vmmapi.Client) {
	var wg sync.WaitGroup
	var mu sync.Mutex // ch takes one sender at a time here, for a stable order per VM
	for name, c := range vmms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
			defer cancel()
			st, err := c.Stats(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			emitStats(ch, name, st)
		}()
	}
	wg.Wait()
}

func emitStats(ch chan<- prometheus.Metric, vm string, st vmmapi.Stats) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for reason, n := range st.Exits {
		counter(descExits, n, vm, reason)
	}
	counter(descEmulated, st.EmulatedInstructions, vm)
	for _, d := range st.Disks {
		for _, op := range []struct {
			name           string
			ops, bytes, ns uint64
		}{{"read", d.ReadOps, d.ReadBytes, d.ReadLatencyNs}, {"write", d.WriteOps, d.WriteBytes, d.WriteLatencyNs}, {"flush", d.FlushOps, 0, d.FlushLatencyNs}} {
			counter(descDiskOps, op.ops, vm, d.Name, op.name)
			ch <- prometheus.MustNewConstMetric(descDiskLat, prometheus.CounterValue, float64(op.ns)/1e9, vm, d.Name, op.name)
			if op.name != "flush" {
				counter(descDiskB, op.bytes, vm, d.Name, op.name)
			}
		}
		counter(descDiskOps, d.DiscardOps, vm, d.Name, "discard")
		counter(descDiskErr, d.Errors, vm, d.Name)
	}
	for _, n := range st.NICs {
		counter(descNetPkts, n.RxPackets, vm, n.Name, "rx")
		counter(descNetPkts, n.TxPackets, vm, n.Name, "tx")
		counter(descNetB, n.RxBytes, vm, n.Name, "rx")
		counter(descNetB, n.TxBytes, vm, n.Name, "tx")
		counter(descNetDrops, n.RxDrops, vm, n.Name, "rx")
		counter(descNetDrops, n.TxDrops, vm, n.Name, "tx")
	}
}
