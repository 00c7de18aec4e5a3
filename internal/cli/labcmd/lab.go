// Package labcmd is `govisor lab`: disposable govisor hosts as QEMU VMs
// with KVM inside, on one machine (internal/lab). It lives in the
// govisor-agent binary (it needs netlink for the lab's bridge and TAPs);
// `govisor lab` runs it there.
package labcmd

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/govisor/govisor/internal/cli/cmdutil"
	"github.com/govisor/govisor/internal/cli/termconsole"
	"github.com/govisor/govisor/internal/lab"
	"github.com/spf13/cobra"
)

// NewLabCmd builds `lab` and its subcommands.
func NewLabCmd() *cobra.Command {
	var cache string
	var network int
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Disposable govisor hosts as QEMU VMs with KVM inside: a multi-host cluster on one machine",
		Long: `A lab is N govisor hosts, each a QEMU VM whose kernel loads KVM: KVM-accelerated
(nested) where this machine has /dev/kvm, otherwise TCG with an emulated AMD
CPU that has SVM and nested paging. The hosts sit on a private bridge (` + lab.Bridge + `,
169.254.77.0/24), each runs govisor serve, and they share one etcd cluster.
Lab hosts are built from Debian packages by scripts/lab-build.sh (make lab)
into the cache's lab/ folder; up needs root (bridge, TAPs).`,
	}
	cmd.PersistentFlags().StringVar(&cache, "cache", cmdutil.EnvOr("GOVISOR_CACHE", ".cache"), "the cache holding lab/ (kernel, initramfs, the running lab) and guest/ (env GOVISOR_CACHE)")
	cmd.PersistentFlags().IntVar(&network, "net", 0, "which lab: N uses bridge gvlabN on 169.254.(77+N).0/24, so that labs can run side by side")
	dir := func() string {
		if network == 0 {
			return filepath.Join(cache, "lab", "cluster")
		}
		return filepath.Join(cache, "lab", fmt.Sprintf("cluster-%d", network))
	}
	cmd.AddCommand(newTestExecCmd(&cache), newAgentCmd(), newUpCmd(&cache, &network, dir), newStatusCmd(dir), newExecCmd(dir),
		newConsoleCmd(dir), newKillCmd(dir), newPartitionCmd(dir, true), newPartitionCmd(dir, false), newDownCmd(dir))
	return cmd
}

// loadHost loads the lab in dir and finds its host name.
func loadHost(dir, name string) (*lab.State, lab.HostState, error) {
	st, err := lab.Load(dir)
	if err != nil {
		return nil, lab.HostState{}, err
	}
	h, err := st.Host(name)
	return st, h, err
}

func newAgentCmd() *cobra.Command {
	var listen, token string
	cmd := &cobra.Command{
		Use:    "agent --listen ADDR --token TOKEN",
		Short:  "The agent inside a lab host: runs commands for govisor lab exec",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if token == "" {
				return fmt.Errorf("lab agent: --token is required")
			}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("lab agent: %w", err)
			}
			return http.Serve(l, lab.AgentHandler(token))
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on")
	cmd.Flags().StringVar(&token, "token", "", "bearer token requests must carry")
	return cmd
}

func newStatusCmd(dir func() string) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "List the lab's hosts: QEMU process, lab agent, network",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := lab.Load(dir())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab in %s: %s\n", st.Dir, st.Accel.Kind)
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "HOST\tADDRESS\tQEMU PID\tSTATE\tAGENT\tNETWORK\tCPU\tETCD")
			for _, h := range st.All() {
				state, agent, network, etcd := "running", "ok", "connected", "-"
				if !h.Running() {
					state, agent = "dead", "-"
				} else {
					ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
					if !st.Agent(h).Healthy(ctx) {
						agent = "unreachable"
					}
					cancel()
				}
				if st.Partitioned(h) {
					network = "partitioned"
				}
				if h.Etcd {
					etcd = "member"
				}
				if h.Name == lab.StorageHost {
					etcd = "(storage: NFS " + lab.SharedPath + ")"
				}
				cpu := h.CPU
				if cpu == "" {
					cpu = "default"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.IP, h.PID, state, agent, network, cpu, etcd)
			}
			return tw.Flush()
		},
	}
}

func newExecCmd(dir func() string) *cobra.Command {
	return &cobra.Command{
		Use:   "exec HOST -- COMMAND [ARGS...]",
		Short: "Run a command on a lab host; its output and exit code are the command's",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, h, err := loadHost(dir(), args[0])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			code, err := st.Agent(h).Exec(ctx, lab.ExecRequest{Args: args[1:]}, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			if code != 0 {
				return &cmdutil.ExitError{Code: code}
			}
			return nil
		},
	}
}

func newConsoleCmd(dir func() string) *cobra.Command {
	return &cobra.Command{
		Use:   "console HOST",
		Short: "Attach to a lab host's serial console (a root shell; Ctrl-] quits)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, h, err := loadHost(dir(), args[0])
			if err != nil {
				return err
			}
			conn, err := net.Dial("unix", filepath.Join(h.Dir, "console.sock"))
			if err != nil {
				return fmt.Errorf("lab: %s's console: %w", h.Name, err)
			}
			defer conn.Close()
			return termconsole.Session(conn, os.Stdin, cmd.OutOrStdout(), time.Second)
		},
	}
}

func newKillCmd(dir func() string) *cobra.Command {
	return &cobra.Command{
		Use:   "kill HOST",
		Short: "Pull the power of a lab host: its QEMU process dies with everything in it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := lab.Load(dir())
			if err != nil {
				return err
			}
			return st.Kill(args[0])
		},
	}
}

func newPartitionCmd(dir func() string, cut bool) *cobra.Command {
	use, short := "partition HOST", "Cut a lab host off the lab network (its TAP goes down)"
	if !cut {
		use, short = "heal HOST", "Reconnect a partitioned lab host"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := lab.Load(dir())
			if err != nil {
				return err
			}
			return st.Partition(args[0], cut)
		},
	}
}

func newDownCmd(dir func() string) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop every lab host and remove their TAPs, the bridge and the lab's files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := lab.Load(dir())
			if err != nil {
				return err
			}
			return st.Down(cmd.OutOrStdout())
		},
	}
}
