package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"
)

// etcd ports of the members that lab hosts carry.
const (
	etcdClientPort = 2379
	etcdPeerPort   = 2380
)

// serveArgs is the govisor serve command line of lab host h: the first
// three hosts carry the members of the lab's etcd cluster (one member
// when the lab has one host), the others are clients of it.
//
// With Join only the first host starts with an etcd (a one-member
// cluster); the others join through its agent (`govisor serve --join`),
// which makes the first two of them etcd members, as a cluster grows on
// real hosts.
func (s *State) serveArgs(h HostState) []string {
	var members, endpoints []string
	for _, m := range s.Hosts {
		if m.Etcd && (!s.Join || m.Name == s.Hosts[0].Name) {
			members = append(members, fmt.Sprintf("%s=http://%s:%d", m.Name, m.IP, etcdPeerPort))
			endpoints = append(endpoints, fmt.Sprintf("http://%s:%d", m.IP, etcdClientPort))
		}
	}
	joining := s.Join && h.Name != s.Hosts[0].Name
	args := []string{"govisor", "serve", "--state-dir", "/var/lib/govisor", "--host-name", h.Name,
		"--migration-host", h.IP, "--log-format", "text",
		// TCP with TLS, so that agents reach each other (live migration,
		// the leader's controllers).
		"--listen", fmt.Sprintf("%s:%d", h.IP, AgentAPIPort), "--tls-cert", certFile, "--tls-key", keyFile,
		"--token-file", tokenFile, "--peer-ca", caFile}
	if joining {
		args = append(args, "--join", fmt.Sprintf("https://%s:%d", s.Hosts[0].IP, AgentAPIPort))
	} else {
		args = append(args, "--etcd-endpoints", strings.Join(endpoints, ","))
	}
	if s.HostLeaseTTL > 0 {
		args = append(args, "--host-lease-ttl", s.HostLeaseTTL.String())
	}
	// A joining host gives its etcd URLs in case the cluster makes it a
	// member (it decides: the first two joiners).
	if h.Etcd || joining {
		args = append(args, "--etcd-name", h.Name,
			"--etcd-peer-url", fmt.Sprintf("http://%s:%d", h.IP, etcdPeerPort),
			"--etcd-client-url", fmt.Sprintf("http://%s:%d", h.IP, etcdClientPort))
		if !joining {
			args = append(args, "--etcd-initial-cluster", strings.Join(members, ","))
		}
		if s.Accel.Accel != "kvm" {
			// A TCG lab host can leave its etcd member unscheduled past
			// etcd's default 100 ms heartbeats: needless elections there
			// cost more than slower ones.
			args = append(args, "--etcd-election-timeout", labElectionTimeout.String())
		}
	}
	return args
}

// labElectionTimeout is the etcd election timeout of TCG lab hosts.
const labElectionTimeout = 2 * time.Second

// StartCluster starts govisor serve on every lab host and waits until the
// first host's agent lists every host as live.
func (s *State) StartCluster(ctx context.Context, log io.Writer, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	if !s.Join {
		if err := s.startServe(ctx, s.Hosts...); err != nil {
			return err
		}
		fmt.Fprintf(log, "lab: govisor serve started on %d host(s); waiting for every agent\n", len(s.Hosts))
		if err := s.waitAgents(ctx, len(s.Hosts), deadline); err != nil {
			return err
		}
		return s.createSharedPool(ctx, log, time.Until(deadline))
	}
	// One host at a time, as an operator grows a cluster: each join
	// adds at most one etcd member (a learner until it caught up).
	for i, h := range s.Hosts {
		if err := s.startServe(ctx, h); err != nil {
			return err
		}
		if err := s.waitAgents(ctx, i+1, deadline); err != nil {
			return err
		}
		if i == 0 {
			fmt.Fprintf(log, "lab: %s's agent runs a one-member etcd; the other hosts join it\n", h.Name)
		} else {
			fmt.Fprintf(log, "lab: %s joined the cluster\n", h.Name)
		}
	}
	return s.createSharedPool(ctx, log, time.Until(deadline))
}

// startServe starts govisor serve on hosts.
func (s *State) startServe(ctx context.Context, hosts ...HostState) error {
	for _, h := range hosts {
		req := ExecRequest{Args: s.serveArgs(h), Background: true, Log: "/run/govisor-serve.log"}
		if _, err := s.Agent(h).Exec(ctx, req, io.Discard); err != nil {
			return fmt.Errorf("lab: start govisor serve on %s: %w", h.Name, err)
		}
	}
	return nil
}

// waitAgents waits until the first host's agent lists n live hosts.
func (s *State) waitAgents(ctx context.Context, n int, deadline time.Time) error {
	first := s.Agent(s.Hosts[0])
	var last string
	for {
		out, err := first.Output(ctx, "govisor", "host", "list", "-o", "json")
		if err == nil {
			var hl struct {
				Items []struct {
					Name string `json:"name"`
				} `json:"items"`
			}
			if json.Unmarshal([]byte(out), &hl) == nil && len(hl.Items) >= n {
				return nil
			}
			last = fmt.Sprintf("%d of %d agents live", len(hl.Items), n)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			logs := ""
			for _, h := range s.Hosts {
				o, _ := s.Agent(h).Output(ctx, "tail", "-n", "15", "/run/govisor-serve.log")
				logs += fmt.Sprintf("--- %s: /run/govisor-serve.log\n%s", h.Name, o)
			}
			return fmt.Errorf("lab: the agents were not all live in time (%s)\n%s", last, logs)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// createSharedPool waits until every lab host has mounted the storage
// host's export, then creates the shared pool on it.
func (s *State) createSharedPool(ctx context.Context, log io.Writer, limit time.Duration) error {
	if s.Storage == nil {
		return nil
	}
	deadline := time.Now().Add(limit)
	for _, h := range s.Hosts {
		for {
			out, _ := s.Agent(h).Output(ctx, "cat", "/proc/mounts")
			if strings.Contains(out, " "+SharedPath+" nfs4 ") {
				break
			}
			if time.Now().After(deadline) {
				errOut, _ := s.Agent(h).Output(ctx, "cat", "/run/nfs-mount.err")
				return fmt.Errorf("lab: %s did not mount the shared storage (%s:/) at %s within %v: %s\nthe storage host's console:\n%s",
					h.Name, s.Storage.IP, SharedPath, limit, strings.TrimSpace(errOut), tail(filepath.Join(s.Storage.Dir, "console.log"), 20))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
	out, err := s.Agent(s.Hosts[0]).Output(ctx, "govisor", "pool", "create", SharedPool, "--shared", "--path", SharedPath)
	if err != nil {
		return fmt.Errorf("lab: create the shared pool: %w: %s", err, out)
	}
	fmt.Fprintf(log, "lab: pool %q is the storage host's NFS export, mounted at %s on every host\n", SharedPool, SharedPath)
	return nil
}
