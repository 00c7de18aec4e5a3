package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
)

// AgentBinary is the program `govisor serve` runs: the host agent, which
// embeds etcd. It is a separate binary so that etcd's code (and its package
// initialisation, several milliseconds and megabytes) never loads into the
// VMM processes, which run this lean govisor binary.
const AgentBinary = "govisor-agent"

// findAgent looks for govisor-agent next to this executable, then in PATH.
func findAgent() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), AgentBinary)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(AgentBinary); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found next to govisor or in PATH: install both binaries (make build)", AgentBinary)
}

func newServeExecCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "serve [flags]",
		Short:              "Run the host agent (runs " + AgentBinary + " serve; see govisor serve --help)",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			agent, err := findAgent()
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			argv := append([]string{agent, "serve"}, args...)
			return syscall.Exec(agent, argv, os.Environ())
		},
	}
}

// newLabExecCmd is `govisor lab`, which lives in the agent binary (it
// brings netlink for the lab's bridge and TAPs, which VMMs never need).
func newLabExecCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "lab [command]",
		Short:              "Disposable govisor hosts as QEMU VMs with KVM inside (runs " + AgentBinary + " lab; see govisor lab --help)",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			agent, err := findAgent()
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			argv := append([]string{agent, "lab"}, args...)
			return syscall.Exec(agent, argv, os.Environ())
		},
	}
}
