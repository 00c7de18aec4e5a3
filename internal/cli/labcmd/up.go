package labcmd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/govisor/govisor/internal/lab"
	"github.com/spf13/cobra"
)

func newUpCmd(cache *string, network *int, dir func() string) *cobra.Command {
	var hosts, cpus, memMiB int
	var withQEMU, noServe, storage, join bool
	var storageGiB int
	var cpuModels []string
	cmd := &cobra.Command{
		Use:   "up [--hosts N] [--cpus C] [--memory MIB]",
		Short: "Start a lab: N govisor hosts on a private bridge, one etcd cluster (3 members from 3 hosts), shared storage",
		Example: `  govisor lab up --hosts 3
  govisor lab exec lab1 -- govisor host list
  govisor lab kill lab2; govisor lab down`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t0 := time.Now()
			assets, err := lab.FindAssets(filepath.Join(*cache, "lab"))
			if err != nil {
				return err
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for i, m := range cpuModels {
				// A comma separates the flag's models; a semicolon a model's
				// features, as QEMU's own commas would.
				cpuModels[i] = strings.ReplaceAll(m, ";", ",")
			}
			st, err := lab.Up(cmd.Context(), lab.UpConfig{
				Dir: dir(), Hosts: hosts, CPUs: cpus, MemoryMB: memMiB, Assets: assets,
				BinDir: filepath.Dir(exe), GuestDir: filepath.Join(*cache, "guest"), WithQEMU: withQEMU, Net: *network, Log: out,
				Storage: storage, StorageGiB: storageGiB, CPUModels: cpuModels, Join: join,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "lab: %d host(s) booted in %.1f s\n", hosts, time.Since(t0).Seconds())
			if noServe {
				return nil
			}
			if err := st.StartCluster(cmd.Context(), out, 10*time.Minute); err != nil {
				return err
			}
			fmt.Fprintf(out, "lab: all %d agents ready in %.1f s; try: govisor lab exec lab1 -- govisor host list\n", hosts, time.Since(t0).Seconds())
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&hosts, "hosts", 1, "number of lab hosts")
	f.IntVar(&cpus, "cpus", 0, "vCPUs of each lab host (default 2 on KVM, 1 under TCG, where two vCPU threads break nested guests now and then)")
	f.IntVar(&memMiB, "memory", 2048, "memory of each lab host, MiB")
	f.BoolVar(&withQEMU, "with-qemu", false, "put QEMU in each lab host too (side-by-side benchmarks)")
	f.BoolVar(&storage, "shared-storage", true, "add the storage host: an NFS export every lab host mounts at "+lab.SharedPath+", pool "+lab.SharedPool)
	f.StringSliceVar(&cpuModels, "cpu-models", nil, "QEMU CPU models for the hosts in turn, e.g. EPYC-Rome,EPYC-Milan (\"EPYC;-avx2\" drops a feature; SVM is added): hosts with different CPUs")
	f.IntVar(&storageGiB, "storage-size", 16, "size of the shared storage, GiB (a sparse file)")
	f.BoolVar(&noServe, "no-serve", false, "boot the hosts only; start no etcd or govisor serve")
	f.BoolVar(&join, "join", false, "grow the cluster as on real hosts: lab1 starts a one-member etcd and the others join it in turn (govisor serve --join; the first two joiners become members)")
	return cmd
}
