// Command govisor is the govisor virtualization platform: VMM, host agent and CLI.
package main

import (
	"os"

	"github.com/govisor/govisor/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
