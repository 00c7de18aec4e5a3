package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/vmimport"
	"github.com/govisor/govisor/internal/vmimport/importer"
)

// importFlags are the flags of `govisor import`, which the deprecated
// `govisor image import-ova` takes too.
type importFlags struct {
	api                        apiFlags
	pool, name, format, outDir string
	progress                   bool
}

func (f *importFlags) register(cmd *cobra.Command) {
	f.api.register(cmd)
	cmd.Flags().StringVar(&f.pool, "pool", "", "convert the disks into volumes of this storage pool, through the agent")
	cmd.Flags().StringVar(&f.name, "name", "", "the VM's name, a DNS label (default: derived from the source's)")
	cmd.Flags().StringVar(&f.format, "format", "", "format of the converted disks (default qcow2)")
	cmd.Flags().StringVarP(&f.outDir, "output-dir", "O", "", "without --pool: the folder for the disks and the run config (default: the current folder)")
	cmd.Flags().BoolVarP(&f.progress, "progress", "p", false, "show progress on stderr (the default on a terminal)")
}

// run imports the VM at path, of kind source (one of importer.Sources).
func (f *importFlags) run(cmd *cobra.Command, source, path string) error {
	if !slices.Contains(importer.Sources, source) {
		return &ExitError{Code: exitInvalid, Err: fmt.Errorf("import: unknown source %q: use one of %s", source, strings.Join(importer.Sources, ", "))}
	}
	switch f.api.output {
	case "table", "json", "yaml":
	default:
		// Checked before any disk converts: a local import prints only
		// at the end.
		return &ExitError{Code: exitInvalid, Err: fmt.Errorf("import: -o %q: use table, json or yaml (-O names the output folder)", f.api.output)}
	}
	if f.pool != "" {
		if f.outDir != "" {
			return &ExitError{Code: exitInvalid, Err: fmt.Errorf("import: -O and --pool exclude each other: the pool says where the disks go")}
		}
		return importRemote(cmd, &f.api, f.pool, api.ImportRequest{Source: source, Path: absPath(path), Name: f.name, Format: f.format}, f.progress)
	}
	return importLocal(cmd, &f.api, importer.Options{Source: source, Path: path, Name: f.name, Format: f.format, OutDir: f.outDir}, f.progress)
}

// newImportCmd builds `govisor import SOURCE PATH`: a VM of another
// hypervisor becomes govisor disks and a VM definition.
func newImportCmd() *cobra.Command {
	f := &importFlags{}
	cmd := &cobra.Command{
		Use:   "import vmx|ova|ovf|vbox|hyperv PATH [--pool POOL] [--name NAME]",
		Short: "Import a VMware, OVF/OVA, VirtualBox or Hyper-V VM: its disks converted, a definition, a report",
		Long: `Import a VM of another hypervisor: read its configuration (CPUs, memory,
firmware, disks with their snapshot chains, NICs with their MACs), convert
its disks, and print what was mapped and what was dropped (VMware Tools,
sound cards, USB, floppy and CD drives, ...).

  vmx     a VMware .vmx (its .vmdk disks beside it)
  ova     an OVF package (.ova); its manifest digests are checked
  ovf     an OVF descriptor (.ovf) with its disk files beside it
  vbox    a VirtualBox .vbox (VDI snapshot chains are flattened)
  hyperv  a Hyper-V 2012 R2 export folder (Virtual Machines/*.xml and
          Virtual Hard Disks/); Hyper-V 2016+ exports (.vmcx) are refused

Without --pool the disks go to -O DIR (default: the current folder) and
DIR/NAME.json is a config for "govisor run --config" that boots the disk
through its firmware. With --pool, the agent (on the host where PATH is)
converts the disks into volumes of the pool and returns a VM definition.` + "\n" + exitCodesHelp,
		Example: `  govisor import vmx /vms/web01/web01.vmx -O /var/lib/govisor/web01
  govisor import ova /tmp/appliance.ova --pool local --name app`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, args[0], args[1])
		},
	}
	f.register(cmd)
	return cmd
}

// importRemote asks the agent to import into a pool.
func importRemote(cmd *cobra.Command, f *apiFlags, pool string, req api.ImportRequest, progress bool) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	errw := cmd.ErrOrStderr()
	fmt.Fprintf(errw, "importing %s on the agent into storage pool %s...\n", req.Path, pool)
	if progress || isTerminal(errw) {
		stop := followImport(cmd.Context(), c, pool, req.Name, errw)
		defer stop()
	}
	res, err := c.ImportVM(cmd.Context(), pool, req)
	if err != nil {
		return apiErr(err)
	}
	return f.print(cmd.OutOrStdout(), res, func(w io.Writer) {
		fmt.Fprintf(w, "VM %s: %d CPUs, %s, firmware %s\n", res.Spec.Name, res.Spec.CPUs, res.Spec.Memory, res.Firmware)
		for _, v := range res.Volumes {
			fmt.Fprintf(w, "  volume:  %s (%s, %s)\n", v.Name, v.Format, sizeString(v.VirtualSize))
		}
		printReport(w, res.Mapped, res.Dropped)
		fmt.Fprintf(w, "Define it with \"govisor vm create\" from this definition (give its NICs networks):\n")
		b, _ := json.MarshalIndent(res.Spec, "  ", "  ")
		fmt.Fprintf(w, "  %s\n", b)
	})
}

func printReport(w io.Writer, mapped, dropped []string) {
	for _, m := range mapped {
		fmt.Fprintf(w, "  mapped:  %s\n", m)
	}
	for _, d := range dropped {
		fmt.Fprintf(w, "  dropped: %s\n", d)
	}
}

// importLocal converts into a folder and writes a run config.
func importLocal(cmd *cobra.Command, f *apiFlags, o importer.Options, progress bool) error {
	if o.OutDir == "" {
		o.OutDir = "."
	}
	o.OutDir = absPath(o.OutDir)
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errw := cmd.ErrOrStderr()
	if progress || isTerminal(errw) {
		bars := &progressBars{w: errw}
		o.Progress = func(i, n int, done, total int64) {
			bars.update(fmt.Sprintf("disk %d of %d:", i+1, n), done, total)
			if done == total {
				bars.finish()
			}
		}
	}
	res, err := importer.Import(ctx, o)
	if err != nil {
		return err
	}
	vm := res.VM
	cfgPath := filepath.Join(o.OutDir, vm.Name+".json")
	if err := writeRunConfig(cfgPath, vm, res.Disks); err != nil {
		for _, d := range res.Disks {
			os.Remove(d)
		}
		return err
	}
	return f.print(cmd.OutOrStdout(), localResult(vm, res.Disks, cfgPath), func(w io.Writer) {
		fmt.Fprintf(w, "VM %s: %d CPUs, %d MiB, firmware %s\n", vm.Name, vm.CPUs, vm.MemoryMiB, vm.Firmware)
		for _, d := range res.Disks {
			fmt.Fprintf(w, "  disk:    %s\n", d)
		}
		printReport(w, vm.Mapped, vm.Dropped)
		for _, n := range vm.NICs {
			if n.MAC != "" {
				fmt.Fprintf(w, "  NIC %s keeps MAC %s: add --net tap=NAME,mac=%s (or \"nets\" in the config)\n", n.Source, n.MAC, n.MAC)
			}
		}
		fmt.Fprintf(w, "Run it with: govisor run --config %s\n", cfgPath)
	})
}

// localImport is the -o json|yaml form of a local import.
type localImport struct {
	Name      string         `json:"name"`
	CPUs      int            `json:"cpus"`
	MemoryMiB int64          `json:"memoryMiB"`
	Firmware  string         `json:"firmware"`
	UUID      string         `json:"uuid,omitempty"`
	Disks     []string       `json:"disks"`
	NICs      []vmimport.NIC `json:"nics,omitempty"`
	Config    string         `json:"config"`
	Mapped    []string       `json:"mapped,omitempty"`
	Dropped   []string       `json:"dropped,omitempty"`
}

func localResult(vm *vmimport.VM, disks []string, cfg string) localImport {
	return localImport{Name: vm.Name, CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB, Firmware: vm.Firmware, UUID: vm.UUID, Disks: disks, NICs: vm.NICs,
		Config: cfg, Mapped: vm.Mapped, Dropped: vm.Dropped}
}

// writeRunConfig writes a `govisor run --config` file booting the first
// disk through the VM's firmware.
func writeRunConfig(path string, vm *vmimport.VM, disks []string) error {
	type disk struct {
		Path string `json:"path"`
	}
	cfg := struct {
		Firmware  string `json:"firmware"`
		Vars      string `json:"firmwareVars,omitempty"`
		CPUs      int    `json:"cpus,omitempty"`
		MemoryMiB int64  `json:"memoryMiB,omitempty"`
		// The source's SMBIOS UUID (the config's firmware carries it).
		UUID  string `json:"uuid,omitempty"`
		Disks []disk `json:"disks"`
	}{Firmware: vm.Firmware, CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB, UUID: vm.UUID}
	if vm.Firmware == vmimport.FirmwareUEFI {
		// The VM's UEFI variables, made on its first run beside the config.
		cfg.Vars = strings.TrimSuffix(path, ".json") + ".vars.fd"
	}
	for _, d := range disks {
		cfg.Disks = append(cfg.Disks, disk{Path: d})
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("import: write the run config: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("import: write the run config: %w", err)
	}
	return f.Close()
}

// followImport draws the progress of the volumes an import on the agent
// is converting (the agent lists them with their progress) until stop is
// called. Without --name the VM's name is the agent's to derive, so any
// volume of the pool being made whose name looks like an imported disk's
// is followed.
func followImport(ctx context.Context, c *client.Client, pool, name string, w io.Writer) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		bars := &progressBars{w: w}
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				bars.finish()
				return
			case <-tick.C:
			}
			vols, err := c.ListVolumes(ctx, pool)
			if err != nil {
				continue
			}
			for _, v := range vols {
				if v.Progress == nil || !strings.Contains(v.Name, "-disk") || (name != "" && !strings.HasPrefix(v.Name, name+"-disk")) {
					continue
				}
				bars.update(v.Name+":", v.Progress.DoneBytes, v.Progress.TotalBytes)
				break
			}
		}
	}()
	return func() { cancel(); <-finished }
}
