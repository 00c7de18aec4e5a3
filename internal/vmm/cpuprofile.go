package vmm

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"
)

// Environment variables of the VMM's CPU profile, for diagnosis (e.g.
// GOVISOR_VMM_CPUPROFILE=/tmp/vmm.prof bench/io, which kills the VMM when
// done, hence the duration).
const (
	// EnvCPUProfile names the file a CPU profile of the VMM process goes
	// to; unset: no profile.
	EnvCPUProfile = "GOVISOR_VMM_CPUPROFILE"
	// EnvCPUProfileSeconds ends the profile after this many seconds
	// (default: when Run returns).
	EnvCPUProfileSeconds = "GOVISOR_VMM_CPUPROFILE_SECONDS"
)

// startCPUProfile starts the profile EnvCPUProfile asks for and returns
// the function that ends it and writes it out (also called by the timer
// of EnvCPUProfileSeconds; the first call counts). Failures are reported
// to log, never fatal: the profile is only a diagnosis.
func startCPUProfile(log io.Writer) (stop func()) {
	path := os.Getenv(EnvCPUProfile)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(log, "govisor: %s: %v\n", EnvCPUProfile, err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		fmt.Fprintf(log, "govisor: %s: %v\n", EnvCPUProfile, err)
		return func() {}
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintf(log, "govisor: %s: %v\n", EnvCPUProfile, err)
			}
		})
	}
	if s := os.Getenv(EnvCPUProfileSeconds); s != "" {
		secs, err := strconv.ParseFloat(s, 64)
		if err != nil || secs <= 0 {
			fmt.Fprintf(log, "govisor: %s=%q: want a positive number of seconds\n", EnvCPUProfileSeconds, s)
		} else {
			time.AfterFunc(time.Duration(secs*float64(time.Second)), stop)
		}
	}
	return stop
}
