package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/internal/diskimage/ova"
)

func newImportOVACmd() *cobra.Command {
	var outDir string
	cmd := &cobra.Command{
		Use:   "import-ova FILE.ova",
		Short: "Unpack an OVA: its disks become qcow2, its OVF a govisor VM definition (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if outDir == "" {
				outDir = "."
			}
			if err := os.MkdirAll(outDir, 0o755); err != nil {
				return err
			}
			def, err := ova.Import(args[0], outDir)
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(def, "", "  ")
			if err != nil {
				return err
			}
			path := filepath.Join(outDir, def.Name+".json")
			if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
				return fmt.Errorf("write VM definition: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\nVM definition written to %s\n", b, path)
			return nil
		},
	}
	cmd.Flags().StringVarP(&outDir, "output", "O", "", "folder for the qcow2 disks and the definition (default: current folder)")
	return cmd
}
