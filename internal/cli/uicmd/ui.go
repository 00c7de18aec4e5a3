// Package uicmd is `govisor ui`: the web console of the agent on this
// host's Unix socket, opened in a browser through a proxy on 127.0.0.1
// with a one-time login link (issue 14). The socket needs no token, so the
// proxy is what guards it: only a browser that opened the link gets a
// session (package webauth), and every other request is refused.
package uicmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/cli/cmdutil"
	"github.com/govisor/govisor/internal/webauth"
)

// NewUICmd returns the `ui` command.
func NewUICmd() *cobra.Command {
	var socket, listen string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "ui [--listen 127.0.0.1:PORT]",
		Short: "Open the web console of the local agent (prints a one-time login link)",
		Long: `Serves the web console of the agent on the Unix socket at 127.0.0.1 and
prints a one-time login link: the first browser to open it gets a session;
the link is spent then, and nothing else gets through. Ctrl-C ends it. The
agent's TCP listener serves the same console at https://HOST:PORT/ui/ with
token login.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return Serve(ctx, socket, listen, ttl, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&socket, "socket", cmdutil.EnvOr("GOVISOR_SOCKET", client.DefaultSocket), "agent's Unix socket (env GOVISOR_SOCKET)")
	f.StringVar(&listen, "listen", "127.0.0.1:0", "loopback address to serve the console on (port 0: any free port)")
	f.DurationVar(&ttl, "session-ttl", webauth.DefaultTTL, "how long the browser's session lasts")
	return cmd
}

// Serve proxies the agent on socket to a loopback listener until ctx ends,
// after printing the login link to out.
func Serve(ctx context.Context, socket, listen string, ttl time.Duration, out io.Writer) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("ui: --listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		// Plain HTTP with the socket's full rights: never off the machine.
		return fmt.Errorf("ui: --listen %q: give a loopback address such as 127.0.0.1:8080", listen)
	}
	if c, err := net.DialTimeout("unix", socket, 2*time.Second); err != nil {
		return fmt.Errorf("ui: no agent at %s: %w", socket, err)
	} else {
		c.Close()
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("ui: %w", err)
	}
	links := &webauth.Links{}
	auth := &webauth.Auth{Sessions: webauth.NewSessions(ttl), Links: links}
	srv := &http.Server{Handler: auth.Handler(proxy(socket)), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(out, "The govisor console of the agent at %s; open this one-time link in a browser on this machine (Ctrl-C ends):\n\n  http://%s%s?token=%s\n\n",
		socket, l.Addr(), webauth.LinkPath, links.Add())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("ui: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("ui: %w", err)
		}
		return nil
	}
}

// proxy forwards requests (WebSocket upgrades included) to the agent's
// Unix socket. The Host header stays the browser's, so the agent's
// WebSocket origin check compares the page's origin with it.
func proxy(socket string) http.Handler {
	target := &url.URL{Scheme: "http", Host: "govisor"}
	var d net.Dialer
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", socket)
			},
		},
		// Event streams (GET /v1/events) must reach the browser as they come.
		FlushInterval: -1,
	}
}
