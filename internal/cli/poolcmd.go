package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/api"
)

// newPoolCmd builds `govisor pool`: storage pools (directories of volumes).
func newPoolCmd() *cobra.Command {
	f := &apiFlags{}
	cmd := &cobra.Command{
		Use:   "pool",
		Short: "Define, list and delete storage pools",
		Long: `Define, list and delete storage pools: a dir pool is a directory on one
host, a shared pool a directory that every host mounts at the same path
(NFS, ...). A VM disk names a volume as "pool: NAME, volume: VOLUME".` + "\n" + exitCodesHelp,
	}
	f.register(cmd)
	cmd.AddCommand(poolCreateCmd(f), poolListCmd(f), poolShowCmd(f), poolDeleteCmd(f))
	return cmd
}

func poolCreateCmd(f *apiFlags) *cobra.Command {
	var p api.Pool
	var shared bool
	cmd := &cobra.Command{
		Use:   "create NAME --path DIR",
		Short: "Define a storage pool",
		Example: `  govisor pool create local --path /var/lib/govisor/images
  govisor pool create nfs --shared --path /mnt/nfs/govisor`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			p.Name = args[0]
			if p.Path != "" {
				p.Path = absPath(p.Path)
			}
			if shared {
				p.Kind = api.PoolShared
			}
			out, err := c.CreatePool(cmd.Context(), p)
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), out, func(w io.Writer) {
				fmt.Fprintf(w, "storage pool %s created (%s %s)\n", out.Name, out.Kind, out.Path)
			})
		},
	}
	cmd.Flags().StringVar(&p.Path, "path", "", "the pool's directory (a dir pool's is created if missing)")
	cmd.Flags().BoolVar(&shared, "shared", false, "every host mounts the directory at the same path")
	cmd.Flags().StringVar(&p.Host, "host", "", "the host of a dir pool (default: the agent's)")
	return cmd
}

func poolTable(pools []api.Pool) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprintln(w, "NAME\tKIND\tHOST\tPATH\tFREE\tCAPACITY")
		for _, p := range pools {
			free, capa := "-", "-"
			if p.CapacityBytes > 0 {
				free, capa = sizeString(int64(p.FreeBytes)), sizeString(int64(p.CapacityBytes))
			}
			host := p.Host
			if p.Shared {
				host = "(all)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Kind, host, p.Path, free, capa)
		}
	}
}

func poolListCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List storage pools",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			pools, err := c.ListPools(cmd.Context())
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), api.PoolList{Items: pools}, poolTable(pools))
		},
	}
}

func poolShowCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a storage pool",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			p, err := c.GetPool(cmd.Context(), args[0])
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), p, poolTable([]api.Pool{p}))
		},
	}
}

func poolDeleteCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"rm"},
		Short:   "Forget a storage pool no VM uses (its files stay on disk)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.DeletePool(cmd.Context(), args[0]); err != nil {
				return apiErr(err)
			}
			if f.output == "table" {
				fmt.Fprintf(cmd.OutOrStdout(), "storage pool %s deleted (its files stay)\n", args[0])
			}
			return nil
		},
	}
}

// newVolumeCmd builds `govisor volume`: disk images in storage pools.
func newVolumeCmd() *cobra.Command {
	f := &apiFlags{}
	cmd := &cobra.Command{
		Use:     "volume",
		Aliases: []string{"vol"},
		Short:   "Create, import, convert, list and delete volumes (disk images in pools)",
		Long:    "Create, import, convert, list and delete volumes, named POOL/VOLUME.\n" + exitCodesHelp,
	}
	f.register(cmd)
	cmd.AddCommand(volCreateCmd(f), volConvertCmd(f), volListCmd(f), volShowCmd(f), volDeleteCmd(f))
	return cmd
}

// splitVolume parses POOL/VOLUME.
func splitVolume(s string) (pool, vol string, err error) {
	pool, vol, ok := strings.Cut(s, "/")
	if !ok || pool == "" || vol == "" || strings.Contains(vol, "/") {
		return "", "", &ExitError{Code: exitInvalid, Err: fmt.Errorf("%q: name a volume as POOL/VOLUME", s)}
	}
	return pool, vol, nil
}

func volTable(vols []api.Volume) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprintln(w, "POOL\tNAME\tFORMAT\tSIZE\tUSED\tVMS")
		for _, v := range vols {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Pool, v.Name, v.Format, sizeString(v.VirtualSize), sizeString(v.ActualSize), dash(strings.Join(v.UsedBy, ",")))
		}
	}
}

func volCreateCmd(f *apiFlags) *cobra.Command {
	var req api.VolumeCreate
	cmd := &cobra.Command{
		Use:   "create POOL/VOLUME (--size SIZE | --from IMAGE)",
		Short: "Create an empty volume, or import an image file (converted to --format)",
		Example: `  govisor volume create local/data.qcow2 --size 20G
  govisor volume create local/root.qcow2 --from debian.vmdk`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, vol, err := splitVolume(args[0])
			if err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			req.Name = vol
			if req.From != "" {
				req.From = absPath(req.From)
			}
			v, err := c.CreateVolume(cmd.Context(), pool, req)
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), v, volTable([]api.Volume{v}))
		},
	}
	cmd.Flags().StringVar(&req.Size, "size", "", "size of an empty volume (e.g. 10G)")
	cmd.Flags().StringVarP(&req.Format, "format", "f", "", "raw, qcow2 (default), vmdk, vhd, vhdx or vdi")
	cmd.Flags().StringVar(&req.From, "from", "", "an image file on the agent's host to import")
	return cmd
}

func volConvertCmd(f *apiFlags) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "convert POOL/VOLUME NEW-VOLUME --format FORMAT",
		Short:   "Copy a volume into a new volume of the same pool, in another format",
		Example: `  govisor volume convert local/root.qcow2 root.raw --format raw`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, vol, err := splitVolume(args[0])
			if err != nil {
				return err
			}
			if format == "" {
				return &ExitError{Code: exitInvalid, Err: fmt.Errorf("--format is required")}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			v, err := c.CreateVolume(cmd.Context(), pool, api.VolumeCreate{Name: args[1], Format: format, FromVolume: vol})
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), v, volTable([]api.Volume{v}))
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "raw, qcow2, vmdk, vhd, vhdx or vdi")
	return cmd
}

func volListCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "list POOL",
		Aliases: []string{"ls"},
		Short:   "List a pool's volumes",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			vols, err := c.ListVolumes(cmd.Context(), args[0])
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), api.VolumeList{Items: vols}, volTable(vols))
		},
	}
}

func volShowCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show POOL/VOLUME",
		Short: "Show a volume: format, sizes, path and the VMs using it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, vol, err := splitVolume(args[0])
			if err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			v, err := c.GetVolume(cmd.Context(), pool, vol)
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), v, func(w io.Writer) {
				fmt.Fprintf(w, "Name:\t%s/%s\nPath:\t%s\nFormat:\t%s\nSize:\t%s (%d bytes)\nUsed on disk:\t%s\nVMs:\t%s\n",
					v.Pool, v.Name, v.Path, v.Format, sizeString(v.VirtualSize), v.VirtualSize, sizeString(v.ActualSize), dash(strings.Join(v.UsedBy, ", ")))
			})
		},
	}
}

func volDeleteCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "delete POOL/VOLUME",
		Aliases: []string{"rm"},
		Short:   "Delete a volume no VM uses",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, vol, err := splitVolume(args[0])
			if err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.DeleteVolume(cmd.Context(), pool, vol); err != nil {
				return apiErr(err)
			}
			if f.output == "table" {
				fmt.Fprintf(cmd.OutOrStdout(), "volume %s/%s deleted\n", pool, vol)
			}
			return nil
		},
	}
}
