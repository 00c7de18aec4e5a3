package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/apitoken"
	"github.com/govisor/govisor/internal/cli/cmdutil"
)

// Exit codes of the API commands, for scripts.
const (
	exitFailure      = 1 // anything else
	exitInvalid      = 2 // bad input: flags, definition file, HTTP 400
	exitNotFound     = 3 // no such VM (HTTP 404)
	exitConflict     = 4 // name taken, VM not stopped (HTTP 409)
	exitUnauthorized = 5 // missing or wrong token (HTTP 401), or its role may not (403)
	exitUnreachable  = 6 // no agent at the socket or URL
)

const exitCodesHelp = `
Exit codes: 0 success, 1 failure, 2 invalid input, 3 VM not found,
4 conflict (name taken, VM not stopped), 5 unauthorized (no token, or its
role may not), 6 agent unreachable.`

// apiFlags says how the CLI reaches the agent and how it prints.
type apiFlags struct {
	socket, url, tokenFile, caCert string
	output                         string
}

func (f *apiFlags) register(cmd *cobra.Command) {
	f.registerConn(cmd)
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "table", "output format: table, json or yaml")
}

// registerConn adds the flags that say how to reach the agent, for a
// command whose output is not a table.
func (f *apiFlags) registerConn(cmd *cobra.Command) {
	p := cmd.PersistentFlags()
	p.StringVar(&f.socket, "socket", cmdutil.EnvOr("GOVISOR_SOCKET", client.DefaultSocket), "agent's Unix socket (env GOVISOR_SOCKET)")
	p.StringVar(&f.url, "url", os.Getenv("GOVISOR_URL"), "agent's TCP API, https://HOST:PORT, instead of the socket (env GOVISOR_URL)")
	p.StringVar(&f.tokenFile, "token-file", os.Getenv("GOVISOR_TOKEN_FILE"), "file holding the bearer token for --url (env GOVISOR_TOKEN_FILE)")
	p.StringVar(&f.caCert, "ca-cert", os.Getenv("GOVISOR_CA_CERT"), "PEM CA certificate that signed the agent's TLS certificate")
}

func (f *apiFlags) client() (*client.Client, error) {
	switch f.output {
	case "table", "json", "yaml":
	default:
		return nil, &ExitError{Code: exitInvalid, Err: fmt.Errorf("-o %q: use table, json or yaml", f.output)}
	}
	if f.url == "" {
		return client.New(client.Options{Socket: f.socket})
	}
	o := client.Options{URL: f.url}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, &ExitError{Code: exitInvalid, Err: fmt.Errorf("--token-file: %w", err)}
		}
		// The first token of the file: a file of the token alone, or the
		// agent's own token file (TOKEN role=... name=...).
		o.Token = apitoken.FirstSecret(string(b))
	}
	if f.caCert != "" {
		pem, err := os.ReadFile(f.caCert)
		if err != nil {
			return nil, &ExitError{Code: exitInvalid, Err: fmt.Errorf("--ca-cert: %w", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &ExitError{Code: exitInvalid, Err: fmt.Errorf("--ca-cert %s: no PEM certificate", f.caCert)}
		}
		o.TLSConfig = &tls.Config{RootCAs: pool}
	}
	c, err := client.New(o)
	if err != nil {
		return nil, &ExitError{Code: exitInvalid, Err: err}
	}
	return c, nil
}

// apiErr gives an API error its documented exit code.
func apiErr(err error) error {
	if err == nil {
		return nil
	}
	var ce *client.Error
	if !errors.As(err, &ce) {
		return &ExitError{Code: exitUnreachable, Err: err}
	}
	code := exitFailure
	switch {
	case errors.Is(err, client.ErrInvalid):
		code = exitInvalid
	case errors.Is(err, client.ErrNotFound):
		code = exitNotFound
	case errors.Is(err, client.ErrConflict):
		code = exitConflict
	case errors.Is(err, client.ErrUnauthorized), errors.Is(err, client.ErrForbidden):
		code = exitUnauthorized
	}
	return &ExitError{Code: code, Err: err}
}

// print writes v as JSON or YAML, or calls table for humans.
func (f *apiFlags) print(w io.Writer, v any, table func(io.Writer)) error {
	switch f.output {
	case "json":
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// readDefinition reads a VM definition (YAML or JSON), refusing unknown
// fields, with kernel and initrd paths made absolute relative to the file.
func readDefinition(path string) (api.VMSpec, error) {
	var s api.VMSpec
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return s, &ExitError{Code: exitInvalid, Err: fmt.Errorf("-f: %w", err)}
	}
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		return s, &ExitError{Code: exitInvalid, Err: fmt.Errorf("%s: %w", path, err)}
	}
	base := "."
	if path != "-" {
		base = filepath.Dir(path)
	}
	for _, p := range []*string{&s.Kernel, &s.Initrd} {
		if *p != "" && !filepath.IsAbs(*p) {
			if abs, err := filepath.Abs(filepath.Join(base, *p)); err == nil {
				*p = abs
			}
		}
	}
	return s, nil
}

func newVMCmd() *cobra.Command {
	f := &apiFlags{}
	cmd := &cobra.Command{
		Use:   "vm",
		Short: "Define, start, stop and inspect VMs through the host agent",
		Long: `Manage VMs through the govisor agent ('govisor serve'). A VM definition is a
YAML file:

  name: web1
  cpus: 2
  memory: 512M
  kernel: vmlinux          # relative paths are relative to the file
  initrd: initrd.cpio
  cmdline: console=ttyS0
  boot: linux64            # or pvh
  restartPolicy: on-failure  # never, on-failure or always
  disks:                   # virtio-blk, in order (vda, vdb, ...)
    - path: /var/lib/govisor/web1.qcow2
    - {path: /srv/data.raw, readOnly: true}
  rng: true
  balloon: true
  stopTimeout: 30s         # stop: ACPI power button, then terminate after this
` + exitCodesHelp,
	}
	f.register(cmd)
	cmd.AddCommand(vmCreateCmd(f), vmApplyCmd(f), vmListCmd(f), vmShowCmd(f), vmDeleteCmd(f), vmConsoleCmd(f),
		vmActionCmd(f, "start", "Start a VM", "start"),
		vmActionCmd(f, "restart", "Shut a VM down and start it again", "restart"),
		vmActionCmd(f, "reboot", "Reset a VM (no guest shutdown: a new VMM boots it at once)", "reboot"),
		vmPauseResumeCmd(f, "pause", "Pause a running VM's vCPUs"),
		vmPauseResumeCmd(f, "resume", "Resume a paused VM"),
		vmSnapshotCmd(f), vmSnapshotsCmd(f), vmRestoreCmd(f), vmMigrateCmd(f), vmDiskAttachCmd(f), vmDiskDetachCmd(f),
		vmStopCmd(f))
	return cmd
}

// vmNames completes VM names from the agent.
func vmNames(f *apiFlags) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		c, err := f.client()
		if err != nil || len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		vms, _ := c.ListVMs(ctx)
		var names []string
		for _, v := range vms {
			names = append(names, v.Spec.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

func vmCreateCmd(f *apiFlags) *cobra.Command {
	var file string
	var noStart bool
	var host string
	cmd := &cobra.Command{
		Use:   "create -f vm.yaml [--host auto|HOST]",
		Short: "Define a VM from a YAML file and start it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := readDefinition(file)
			if err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			v, err := c.CreateVMOn(cmd.Context(), s, !noStart, host)
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), v, func(w io.Writer) { fmt.Fprintf(w, "vm %s created on %s\n", v.Spec.Name, v.Host) })
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "VM definition (YAML or JSON; - for stdin)")
	cmd.Flags().BoolVar(&noStart, "no-start", false, "define the VM without starting it")
	cmd.Flags().StringVar(&host, "host", "", "the host to run it on: auto (the cluster's placement picks), or a host's name (default: the agent's host)")
	cmd.MarkFlagRequired("file")
	return cmd
}

func vmApplyCmd(f *apiFlags) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f vm.yaml",
		Short: "Create a VM or update its definition (idempotent; a change applies at the next start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := readDefinition(file)
			if err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			v, result, err := c.ApplyVM(cmd.Context(), s)
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), v, func(w io.Writer) { fmt.Fprintf(w, "vm %s %s\n", v.Spec.Name, result) })
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "VM definition (YAML or JSON; - for stdin)")
	cmd.MarkFlagRequired("file")
	return cmd
}

func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return d.String()
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func pidString(pid int) string {
	if pid == 0 {
		return "-"
	}
	return strconv.Itoa(pid)
}

func vmListCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List VMs",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			vms, err := c.ListVMs(cmd.Context())
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), api.VMList{Items: vms}, func(w io.Writer) {
				fmt.Fprintln(w, "NAME\tSTATE\tDESIRED\tCPUS\tMEMORY\tHOST\tPID\tRESTARTS\tAGE")
				for _, v := range vms {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\n", v.Spec.Name, v.Status.State, v.Desired,
						v.Spec.CPUs, v.Spec.Memory, v.Host, pidString(v.Status.PID), v.Status.Restarts, age(v.Status.Since))
				}
			})
		},
	}
}

func vmShowCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:               "show NAME",
		Short:             "Show a VM's definition and state",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: vmNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			v, err := c.GetVM(cmd.Context(), args[0])
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), v, func(w io.Writer) {
				s, st := v.Spec, v.Status
				rows := [][2]string{
					{"Name", s.Name}, {"State", string(st.State)}, {"Desired", string(v.Desired)}, {"Host", v.Host},
					{"PID", pidString(st.PID)}, {"Since", st.Since.Format(time.RFC3339)}, {"Restarts", strconv.Itoa(st.Restarts)},
					{"Exit reason", st.ExitReason}, {"CPUs", strconv.Itoa(s.CPUs)}, {"Memory", s.Memory},
					{"Kernel", s.Kernel}, {"Initrd", s.Initrd}, {"Cmdline", s.Cmdline}, {"Boot", s.Boot},
					{"Debug exit", strconv.FormatBool(s.DebugExit)}, {"Restart policy", s.RestartPolicy},
					{"Stop timeout", s.StopTimeout}, {"Migration", migrationString(st.Migration)},
				}
				for _, r := range rows {
					if r[1] == "" {
						r[1] = "-"
					}
					fmt.Fprintf(w, "%s:\t%s\n", r[0], r[1])
				}
			})
		},
	}
}

func vmActionCmd(f *apiFlags, use, short, action string) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:               use + " NAME",
		Short:             short,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: vmNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAction(cmd, f, args[0], action, wait)
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", time.Minute, "wait this long for the VM to get there (0: do not wait)")
	return cmd
}

func vmStopCmd(f *apiFlags) *cobra.Command {
	var wait time.Duration
	var force bool
	cmd := &cobra.Command{
		Use:               "stop NAME [--force]",
		Short:             "Shut a VM down: ACPI power button, terminated after its stopTimeout (--force: kill its VMM at once)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: vmNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			action := "stop"
			if force {
				action = "force-stop"
			}
			return runAction(cmd, f, args[0], action, wait)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "kill the VMM at once (SIGKILL) instead of asking it to stop")
	cmd.Flags().DurationVar(&wait, "wait", time.Minute, "wait this long for the VM to stop (0: do not wait)")
	return cmd
}

func runAction(cmd *cobra.Command, f *apiFlags, name, action string, wait time.Duration) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	v, err := c.Action(cmd.Context(), name, action, wait)
	if err != nil {
		return apiErr(err)
	}
	return f.print(cmd.OutOrStdout(), v, func(w io.Writer) {
		fmt.Fprintf(w, "vm %s: %s (desired %s)\n", name, v.Status.State, v.Desired)
	})
}

func vmDeleteCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:               "delete NAME",
		Aliases:           []string{"rm"},
		Short:             "Delete a stopped VM and its logs",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: vmNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.DeleteVM(cmd.Context(), args[0]); err != nil {
				return apiErr(err)
			}
			if f.output == "table" {
				fmt.Fprintf(cmd.OutOrStdout(), "vm %s deleted\n", args[0])
			}
			return nil
		},
	}
}

func newHostCmd() *cobra.Command {
	f := &apiFlags{}
	cmd := &cobra.Command{Use: "host", Short: "Inspect the host the agent runs on", Long: "Inspect the host the agent runs on.\n" + exitCodesHelp}
	f.register(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the cluster's hosts: state (ready, unreachable), leader, capacity and load",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			hs, err := c.Hosts(cmd.Context())
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), api.HostList{Items: hs}, func(w io.Writer) {
				fmt.Fprintln(w, "NAME\tSTATE\tCPUS\tMEMORY\tALLOCATED\tVMS\tCPU LOAD\tVERSION\tSTARTED")
				for _, h := range hs {
					name, started := h.Name, "-"
					if h.Leader {
						name += " (leader)"
					}
					if !h.Started.IsZero() {
						started = age(h.Started)
					}
					load := "-"
					if h.Load != nil && h.CPUs > 0 {
						load = fmt.Sprintf("%.0f%%", 100*h.Load.CPUBusy/float64(h.CPUs))
					}
					fmt.Fprintf(w, "%s\t%s\t%d\t%d MiB\t%d MiB\t%d/%d\t%s\t%s\t%s\n", name, h.State, h.CPUs, h.MemoryMiB, h.AllocatedMiB, h.RunningVMs, h.VMs, load, h.Version, started)
				}
			})
		},
	}, hostMaintenanceCmd(f), &cobra.Command{
		Use:   "show",
		Short: "Show this host: CPUs, memory, VMs, agent version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			h, err := c.Host(cmd.Context())
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), h, func(w io.Writer) {
				fmt.Fprintf(w, "Name:\t%s\nAgent:\t%s (%s)\nStore:\t%s etcd\nCPUs:\t%d\nMemory:\t%d MiB (%d MiB allocated to running VMs)\nVMs:\t%d (%d running)\nStarted:\t%s\n",
					h.Name, h.AgentID, h.Version, h.Store, h.CPUs, h.MemoryMiB, h.AllocatedMiB, h.VMs, h.RunningVMs, h.Started.Format(time.RFC3339))
			})
		},
	})
	return cmd
}
