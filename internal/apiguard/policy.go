// Package apiguard checks each API request before its handler runs (issue
// 15): the role its token needs for the route, the size of its body and
// the token's request rate; and it records every change in the audit log.
package apiguard

import (
	"net/http"
	"strings"

	"github.com/govisor/govisor/internal/apitoken"
)

// Need is the least role that may call the route of pattern ("METHOD
// /path", as registered on the API's ServeMux):
//   - viewer: reading (GET, HEAD), but not the console, which types into
//     the guest, nor the audit log;
//   - operator: also the VMs' lifecycle, disks, snapshots and migrations
//     (everything under /v1/vms) and running the balancer's moves;
//   - admin: everything, such as pools, networks, cluster settings, host
//     maintenance and the audit log.
func Need(pattern string) apitoken.Role {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "", pattern // a pattern for every method: only the 404 of "/"
	}
	switch {
	case path == "/v1/audit":
		return apitoken.Admin
	case path == "/v1/vms/{name}/console":
		return apitoken.Operator
	case method == "" || method == http.MethodGet || method == http.MethodHead:
		return apitoken.Viewer
	case path == "/v1/vms" || strings.HasPrefix(path, "/v1/vms/"):
		return apitoken.Operator
	case method == http.MethodPost && path == "/v1/cluster/balance":
		return apitoken.Operator // the balancer's moves are live migrations
	}
	return apitoken.Admin
}

// changes reports methods that change something: the ones audited.
func changes(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

// target names what a request acts on: the pattern's segments after /v1/
// up to its last wildcard (but {action}: it says what, not on what), the
// wildcards replaced by the request's values; "vms/web-1" for POST
// /v1/vms/web-1/stop, "pools/p/volumes/v" for a volume.
func target(pattern string, r *http.Request) string {
	_, path, ok := strings.Cut(pattern, " ")
	if !ok {
		path = pattern
	}
	segs := strings.Split(strings.TrimPrefix(path, "/v1/"), "/")
	end := 1
	for i, s := range segs {
		if strings.HasPrefix(s, "{") && s != "{action}" {
			end = i + 1
		}
	}
	if end > len(segs) {
		end = len(segs)
	}
	out := make([]string, 0, end)
	for _, s := range segs[:end] {
		if name, ok := strings.CutPrefix(s, "{"); ok {
			s = r.PathValue(strings.TrimSuffix(name, "}"))
		}
		out = append(out, s)
	}
	return strings.Join(out, "/")
}
