package controller

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/providers/dns/dnsupdate"
	"github.com/miekg/dns"

	"github.com/incuslb/incuslb/specs"
)

// DNS-01 through an authoritative server that takes RFC 2136 updates: lego's
// dnsupdate provider (imported alone, never lego's all-providers registry),
// with the propagation check asked of that same server instead of the
// host's resolvers, which need not know the zone.

// dnsUpdateSolver is lego's dnsupdate provider for an LB's dnsUpdate.
type dnsUpdateSolver struct {
	*dnsupdate.DNSProvider
	nameserver string // host:port
}

// dnsQueryTimeout bounds one query of the propagation check.
const dnsQueryTimeout = 5 * time.Second

// newDNSUpdateSolver configures lego's provider from the spec and the key
// read from its file (never from the environment).
func newDNSUpdateSolver(u *specs.DNSUpdateSpec, key *specs.TSIGKey) (*dnsUpdateSolver, error) {
	if key == nil {
		return nil, fmt.Errorf("spec.frontend.tls.acme.dnsUpdate.tsigKeyFile: no key read")
	}
	ns := u.Nameserver
	if _, _, err := net.SplitHostPort(ns); err != nil {
		ns = net.JoinHostPort(ns, "53")
	}
	cfg := dnsupdate.NewDefaultConfig()
	cfg.Nameserver = ns
	cfg.TSIGKey, cfg.TSIGAlgorithm, cfg.TSIGSecret = dns.Fqdn(key.Name), dns.Fqdn(key.Algorithm), key.Secret
	cfg.TSIGFile, cfg.TSIGGSSRealm, cfg.TSIGGSSUsername, cfg.TSIGGSSPassword, cfg.TSIGGSSKeytabFile = "", "", "", "", ""
	cfg.Zones = nil
	if u.Zone != "" {
		cfg.Zones = []string{u.Zone}
	}
	cfg.DNSTimeout = dnsQueryTimeout
	cfg.PropagationTimeout, cfg.PollingInterval = 2*time.Minute, 2*time.Second
	cfg.SequenceInterval = time.Second
	p, err := dnsupdate.NewDNSProviderConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &dnsUpdateSolver{DNSProvider: p, nameserver: ns}, nil
}

// DNS01Options makes lego check the record at the nameserver itself.
func (s *dnsUpdateSolver) DNS01Options() []dns01.ChallengeOption {
	return []dns01.ChallengeOption{dns01.WrapPreCheck(
		func(ctx context.Context, _, fqdn, value string, _ dns01.PreCheckFunc) (bool, error) {
			return txtAt(ctx, s.nameserver, fqdn, value)
		})}
}

// txtAt reports whether nameserver answers value among fqdn's TXT records.
func txtAt(ctx context.Context, nameserver, fqdn, value string) (bool, error) {
	m := new(dns.Msg).SetQuestion(dns.Fqdn(fqdn), dns.TypeTXT)
	m.RecursionDesired = false
	c := &dns.Client{Timeout: dnsQueryTimeout}
	r, _, err := c.ExchangeContext(ctx, m, nameserver)
	if err != nil {
		return false, fmt.Errorf("asking %s for %s TXT: %w", nameserver, fqdn, err)
	}
	for _, rr := range r.Answer {
		if t, ok := rr.(*dns.TXT); ok && slices.Contains(t.Txt, value) {
			return true, nil
		}
	}
	return false, fmt.Errorf("%s does not answer the challenge's TXT record for %s yet (%s)", nameserver, strings.TrimSuffix(fqdn, "."),
		dns.RcodeToString[r.Rcode])
}
