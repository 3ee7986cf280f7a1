package incus

import (
	"context"
	"net/url"
	"sort"
)

// Member is a cluster member as placement needs it.
type Member struct {
	Name   string
	Online bool // Incus reports it "Online"
	// Address is the host:port of its API (from its URL), "" when Incus
	// gives none.
	Address string
}

// ClusterMembers lists the members of the cluster, sorted by name, or
// none when Incus is not clustered.
func (c *Client) ClusterMembers(ctx context.Context) ([]Member, error) {
	srv := c.in(ctx, "")
	info, _, err := srv.GetServer()
	if err != nil {
		return nil, err
	}
	if !info.Environment.ServerClustered {
		return nil, nil
	}
	ms, err := srv.GetClusterMembers()
	if err != nil {
		return nil, err
	}
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		var addr string
		if u, err := url.Parse(m.URL); err == nil && u.Port() != "" {
			addr = u.Host
		}
		out = append(out, Member{Name: m.ServerName, Online: m.Status == "Online", Address: addr})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
