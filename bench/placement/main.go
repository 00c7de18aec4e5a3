// Command placement measures placement throughput: a cluster of 1,000
// hosts (32 CPUs, 64 GiB, three zones) takes 10,000 VMs placed one by one
// (each placement updating the allocations; a tenth with a host rule, a
// fifth in anti-affinity groups, a tenth needing a CPU feature), spread
// and pack, best of -n runs; then the HA batch of the fullest host.
//
// Usage: go run ./bench/placement [-hosts 1000] [-vms 10000] [-n 5]
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/placement/placementtest"
)

func main() {
	hosts := flag.Int("hosts", 1000, "hosts in the cluster")
	vms := flag.Int("vms", 10000, "VMs to place")
	n := flag.Int("n", 5, "runs (the best and the median are printed)")
	flag.Parse()
	c := placementtest.Bench(*hosts, *vms)
	fmt.Printf("placement: %d VMs onto %d hosts, one by one, %d runs\n", *vms, *hosts, *n)
	for _, st := range []placement.Strategy{placement.Spread, placement.Pack} {
		var times []time.Duration
		var last *placement.State
		for range *n {
			s, err := placement.New(placement.Cluster{Hosts: c.Hosts, Pools: c.Pools}, placement.Config{Strategy: st})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			start := time.Now()
			for _, vm := range c.VMs {
				if _, err := s.Place(vm); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
			}
			times = append(times, time.Since(start))
			last = s
		}
		best, med := stats(times)
		fmt.Printf("  %-6s best %7.1f ms  median %7.1f ms  %9.0f VMs/s  (%.2f µs per VM, %d hosts in use)\n",
			st, ms(best), ms(med), float64(*vms)/best.Seconds(), float64(best.Microseconds())/float64(*vms), inUse(last))
		haBatch(last)
	}
}

// haBatch fails the host with the most HA memory and times the batch
// placement of its HA VMs onto the others.
func haBatch(s *placement.State) {
	var worst string
	var worstMiB uint64
	for _, h := range s.Hosts() {
		var mib uint64
		for _, vm := range s.VMsOn(h.Name) {
			if vm.HA {
				mib += vm.MemoryMiB
			}
		}
		if mib > worstMiB {
			worst, worstMiB = h.Name, mib
		}
	}
	var ha []placement.VM
	for _, vm := range s.VMsOn(worst) {
		if vm.HA {
			ha = append(ha, vm)
		}
	}
	s.SetHostState(worst, placement.HostFenced)
	start := time.Now()
	res := s.PlaceBatch(ha)
	fmt.Printf("         HA batch of %s: %d VMs (%d MiB) placed in %.2f ms, %d refused\n",
		worst, len(res.Placed), worstMiB, ms(time.Since(start)), len(res.Failed))
}

// inUse counts the hosts that took a VM.
func inUse(s *placement.State) int {
	n := 0
	for _, h := range s.Hosts() {
		if u, _ := s.Usage(h.Name); u.MemoryMiB > 0 {
			n++
		}
	}
	return n
}

// stats returns the minimum and the median.
func stats(d []time.Duration) (time.Duration, time.Duration) {
	s := append([]time.Duration(nil), d...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[0], s[len(s)/2]
}

// ms is a duration in milliseconds.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
