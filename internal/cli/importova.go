package cli

import (
	"github.com/spf13/cobra"
)

// newImportOVACmd builds `govisor image import-ova FILE.ova`, the older
// name of `govisor import ova`: it runs that command, flags and output
// alike, and says it is deprecated (on stderr, as cobra does).
func newImportOVACmd() *cobra.Command {
	f := &importFlags{}
	cmd := &cobra.Command{
		Use:        "import-ova FILE.ova [-O DIR | --pool POOL] [--name NAME]",
		Short:      `Import an OVA: the same as "govisor import ova FILE.ova"`,
		Deprecated: `use "govisor import ova FILE.ova" (this runs it)`,
		Args:       cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, "ova", args[0])
		},
	}
	f.register(cmd)
	return cmd
}
