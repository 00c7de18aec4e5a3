package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/api"
)

// newEventsCmd is `govisor events`: the agent's event stream.
func newEventsCmd() *cobra.Command {
	f := &apiFlags{}
	var since int64
	var clusterOnly bool
	cmd := &cobra.Command{
		Use:   "events [--since REVISION] [--cluster]",
		Short: "Follow the cluster's events: VM changes, and the cluster's decisions with their reasons",
		Long: `Follow the agent's event stream (GET /v1/events) until interrupted: VM
definitions, statuses and deletions, and the cluster's decisions (HA
restarts, evacuations, balancing, host state changes, joins), each with its
reason. --since replays what came after an etcd revision; -o json prints
each event as a JSON line.
` + exitCodesHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			err = c.Events(cmd.Context(), since, func(e api.Event) error {
				if clusterOnly && e.Cluster == nil {
					return nil
				}
				if f.output == "json" {
					return json.NewEncoder(w).Encode(e)
				}
				_, err := fmt.Fprintln(w, eventLine(e))
				return err
			})
			if cmd.Context().Err() != nil {
				return nil // interrupted: the normal end
			}
			return apiErr(err)
		},
	}
	f.register(cmd)
	cmd.Flags().Int64Var(&since, "since", 0, "replay the events after this etcd revision (0: only new ones)")
	cmd.Flags().BoolVar(&clusterOnly, "cluster", false, "only the cluster's decisions and host changes")
	return cmd
}

// eventLine is one event as a line of text.
func eventLine(e api.Event) string {
	switch {
	case e.Cluster != nil:
		return clusterEventLine(*e.Cluster)
	case e.Type == "status" && e.Status != nil:
		line := fmt.Sprintf("%s\tstatus\t%s\t%s on %s", time.Now().UTC().Format(time.RFC3339), e.VM, e.Status.State, e.Status.Host)
		if e.Status.ExitReason != "" {
			line += ": " + e.Status.ExitReason
		}
		return line
	case e.Type == "spec":
		return fmt.Sprintf("%s\tspec\t%s\tdesired %s", time.Now().UTC().Format(time.RFC3339), e.VM, e.Desired)
	default:
		return fmt.Sprintf("%s\t%s\t%s", time.Now().UTC().Format(time.RFC3339), e.Type, e.VM)
	}
}

// clusterEventLine is a cluster event as a line of text.
func clusterEventLine(c api.ClusterEvent) string {
	return fmt.Sprintf("%s\t%s\t%s\t%s", c.Time.UTC().Format(time.RFC3339), c.Kind, or(c.VM, c.Host), c.Reason)
}

// printClusterEvents lists cluster events, one a line.
func printClusterEvents(w io.Writer, evs []api.ClusterEvent) {
	if len(evs) == 0 {
		fmt.Fprintln(w, "no cluster events")
	}
	for _, e := range evs {
		fmt.Fprintln(w, clusterEventLine(e))
	}
}
