package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/apitoken"
)

func newAuditCmd() *cobra.Command {
	f := &apiFlags{}
	var since, who string
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the agent's audit log: every change made through its API (admin tokens)",
		Long: `Show the agent's audit log: each POST, PUT or DELETE made through its API,
refused ones included, with who made it (the token's name; "local" is the
Unix socket), its role, when, and the answer's status. The agent keeps the
log as JSON lines in its state directory (audit.jsonl).

--since takes "now", a duration back from now (90m, 24h, 7d), a date
(2006-01-02, UTC) or an RFC 3339 time.
` + exitCodesHelp,
		Example: "  govisor audit --since 24h\n  govisor audit --who alice -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := client.AuditQuery{Who: who, Limit: limit}
			if since != "" {
				t, err := parseWhen(since, time.Now().UTC())
				if err != nil {
					return &ExitError{Code: exitInvalid, Err: fmt.Errorf("--since: %w", err)}
				}
				q.Since = t
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			l, err := c.Audit(cmd.Context(), q)
			if err != nil {
				return apiErr(err)
			}
			return f.print(cmd.OutOrStdout(), l, func(w io.Writer) {
				fmt.Fprintln(w, "TIME\tWHO\tROLE\tMETHOD\tPATH\tSTATUS")
				for _, r := range l.Items {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\n", r.Time.Format(time.RFC3339), r.Who, r.Role, r.Method, r.Path, r.Status)
				}
			})
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "", "only changes since then: a duration ago (24h, 7d), a date or an RFC 3339 time")
	fl.StringVar(&who, "who", "", "only this token's changes")
	fl.IntVar(&limit, "limit", 0, "at most this many of the newest (default: the agent's 1000)")
	return cmd
}

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage the agent's API tokens (its --token-file)",
	}
	var file, role, name, out string
	create := &cobra.Command{
		Use:   "create --token-file FILE --name NAME [--role admin|operator|viewer] [--out FILE]",
		Short: "Add a new random token with a role to an agent's token file",
		Long: `Add a new random token to the agent's token file (its --token-file), with a
name (recorded in the audit log) and a role: viewer (read only), operator
(also VMs: lifecycle, disks, snapshots, migrations) or admin (everything).
The agent reads the file again when it changes: the token works within a
second, without a restart. The token is printed, or written alone to --out
(mode 0600), which govisor's --token-file then takes.`,
		Example: "  govisor token create --token-file /etc/govisor/tokens --name ci --role operator --out ci.token",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := apitoken.ParseRole(role)
			if err != nil {
				return &ExitError{Code: exitInvalid, Err: fmt.Errorf("--role: %w", err)}
			}
			if file == "" || name == "" {
				return &ExitError{Code: exitInvalid, Err: fmt.Errorf("give --token-file and --name")}
			}
			t := apitoken.Token{Secret: apitoken.NewSecret(), Identity: apitoken.Identity{Name: name, Role: r}}
			if out != "" {
				// The token file first: a token written out but never
				// accepted would only puzzle.
				if err := apitoken.Append(file, t); err != nil {
					return &ExitError{Code: exitInvalid, Err: err}
				}
				if err := os.WriteFile(out, []byte(t.Secret+"\n"), 0o600); err != nil {
					return fmt.Errorf("--out: %w", err)
				}
				return nil
			}
			if err := apitoken.Append(file, t); err != nil {
				return &ExitError{Code: exitInvalid, Err: err}
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Secret)
			return nil
		},
	}
	fl := create.Flags()
	fl.StringVar(&file, "token-file", os.Getenv("GOVISOR_AGENT_TOKEN_FILE"), "the agent's token file (env GOVISOR_AGENT_TOKEN_FILE)")
	fl.StringVar(&name, "name", "", "the token's name, recorded in the audit log (letters, digits, . _ @ -)")
	fl.StringVar(&role, "role", "viewer", "admin, operator or viewer")
	fl.StringVar(&out, "out", "", "write the token to this file (0600) instead of printing it")
	cmd.AddCommand(create)
	return cmd
}
