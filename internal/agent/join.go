package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
)

// Join asks the agent at url (https://HOST:PORT, a host of the cluster)
// to let this host join: it answers with how this host's agent reaches
// the cluster's etcd (api.JoinInfo). It uses cfg's peer credentials: the
// CA of --peer-ca and the first token of --token-file, as agents do when
// they call each other.
func Join(ctx context.Context, cfg Config, url string, req api.JoinRequest) (api.JoinInfo, error) {
	pc := newPeerClients(nil, cfg)
	tc, err := pc.peerTLS()
	if err != nil {
		return api.JoinInfo{}, err
	}
	c, err := client.New(client.Options{URL: url, Token: pc.peerToken(), TLSConfig: tc})
	if err != nil {
		return api.JoinInfo{}, fmt.Errorf("agent: join %s: %w", url, err)
	}
	// etcd may hold a membership change back for seconds after another
	// host joined (its health check): the other agent waits that out.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	info, err := c.AddMember(ctx, req)
	if err != nil {
		return api.JoinInfo{}, fmt.Errorf("agent: join the cluster through %s: %w", url, err)
	}
	if len(info.Endpoints) == 0 {
		return api.JoinInfo{}, fmt.Errorf("agent: join the cluster through %s: it named no etcd endpoints", url)
	}
	return info, nil
}
