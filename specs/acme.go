package specs

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ACMESpec has incuslb obtain and renew certificates from an ACME CA (Let's
// Encrypt, or any RFC 8555 server), one certificate per host, answering
// the HTTP-01 challenges through the load balancer itself. Only `incuslb
// run` obtains and renews them; every verb serves what it holds.
type ACMESpec struct {
	// Directory is the CA's ACME directory URL (https). Default: Let's
	// Encrypt's staging directory, or its production one with Production.
	Directory string `json:"directory,omitempty"`
	// Production switches the default directory to Let's Encrypt's
	// production one. It cannot be combined with Directory.
	Production bool `json:"production,omitempty"`
	// Email is the account's contact address; optional.
	Email string `json:"email,omitempty"`
	// CABundle is a PEM file of roots to trust for the CA's own TLS (a
	// private CA, Pebble); default: the host's roots. A relative path is
	// relative to the spec file.
	CABundle string `json:"caBundle,omitempty"`
	// Hosts are the names to certify: a list, or "fromRoutes" for every
	// routes[].host.
	Hosts ACMEHosts `json:"hosts"`
	// Challenge is how the CA checks control of a host: http-01 (the
	// default; the CA fetches /.well-known/acme-challenge/ from the LB's
	// HTTP port, which must be reachable as port 80 of each host) or
	// dns-01 (a TXT record put through DNSUpdate: wildcards, and hosts the
	// CA cannot reach).
	Challenge string `json:"challenge,omitempty"`
	// DNSUpdate is where dns-01 puts its TXT records: RFC 2136 dynamic
	// updates signed with TSIG, which BIND, Knot and PowerDNS accept.
	DNSUpdate *DNSUpdateSpec `json:"dnsUpdate,omitempty"`
	// EAB is the external account binding some CAs ask for.
	EAB *ACMEEAB `json:"eab,omitempty"`
	// KeyType is the certificates' key: ec256 (default), ec384, rsa2048
	// or rsa4096.
	KeyType string `json:"keyType,omitempty"`
}

// ACMEEAB binds the ACME account to an account at the CA.
type ACMEEAB struct {
	// KID is the key identifier the CA gave.
	KID string `json:"kid"`
	// HMACKeyFile is a file on the controller host holding the HMAC key
	// (base64url, as the CA gave it). Relative to the spec file.
	HMACKeyFile string `json:"hmacKeyFile"`
}

// DNSUpdateSpec is an authoritative DNS server that takes RFC 2136 updates.
type DNSUpdateSpec struct {
	// Nameserver is host:port (port 53 by default) of the server that is
	// authoritative for the hosts' zone and takes the updates. It is also
	// asked whether a record is in place before the CA is.
	Nameserver string `json:"nameserver"`
	// TSIGKeyFile is a file on the controller host holding the TSIG key in
	// BIND's form (what tsig-keygen prints: key "NAME" { algorithm ...;
	// secret "..."; };). Relative to the spec file.
	TSIGKeyFile string `json:"tsigKeyFile"`
	// Zone is the zone to update; default: the one whose SOA the
	// nameserver gives for the record.
	Zone string `json:"zone,omitempty"`
}

// ACMEHosts is a list of hosts, or every route's host (fromRoutes).
type ACMEHosts struct {
	FromRoutes bool
	List       []string
}

// ACMEFromRoutes is the value of acme.hosts that takes the routes' hosts.
const ACMEFromRoutes = "fromRoutes"

// UnmarshalJSON takes a list of strings or the string "fromRoutes".
func (h *ACMEHosts) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s != ACMEFromRoutes {
			return fmt.Errorf("must be a list of hosts or %q, not %q", ACMEFromRoutes, s)
		}
		*h = ACMEHosts{FromRoutes: true}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("must be a list of hosts or %q", ACMEFromRoutes)
	}
	*h = ACMEHosts{List: l}
	return nil
}

// MarshalJSON writes what UnmarshalJSON reads.
func (h ACMEHosts) MarshalJSON() ([]byte, error) {
	if h.FromRoutes {
		return json.Marshal(ACMEFromRoutes)
	}
	return json.Marshal(h.List)
}

// ACME defaults and bounds.
const (
	LetsEncryptStaging    = "https://acme-staging-v02.api.letsencrypt.org/directory"
	LetsEncryptProduction = "https://acme-v02.api.letsencrypt.org/directory"
	ChallengeHTTP01       = "http-01"
	ChallengeDNS01        = "dns-01"
	DefaultACMEKeyType    = "ec256"
	// MaxACMEHosts bounds the hosts of one LoadBalancer: each is an order
	// at the CA, and Let's Encrypt allows 300 new orders per 3 hours.
	MaxACMEHosts = 100
)

var acmeKeyTypes = []string{"ec256", "ec384", "rsa2048", "rsa4096"}

// setACMEDefaults fills the directory, challenge and key type.
func setACMEDefaults(a *ACMESpec) {
	if a == nil {
		return
	}
	if a.Directory == "" {
		a.Directory = LetsEncryptStaging
		if a.Production {
			a.Directory = LetsEncryptProduction
		}
	}
	orString(&a.Challenge, ChallengeHTTP01)
	orString(&a.KeyType, DefaultACMEKeyType)
}

// Hosts are the hosts to certify, in order, without repeats: the list, or
// the routes' hosts (lower case).
func (s *LoadBalancerSpec) ACMEHosts() []string {
	t := s.Frontend.TLS
	if t == nil || t.ACME == nil {
		return nil
	}
	var out []string
	add := func(h string) {
		h = strings.ToLower(h)
		if h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	if t.ACME.Hosts.FromRoutes {
		for _, r := range s.Routes {
			add(r.Host)
		}
	} else {
		for _, h := range t.ACME.Hosts.List {
			add(h)
		}
	}
	return out
}

func validateACME(e *errs, s *LoadBalancerSpec) {
	a := s.Frontend.TLS.ACME
	const p = "spec.frontend.tls.acme"
	if a.Production && a.Directory != "" && a.Directory != LetsEncryptProduction {
		e.add(p+".production", "cannot be combined with directory (%q): production picks Let's Encrypt's production directory", a.Directory)
	}
	if a.Directory != "" {
		if u, err := url.Parse(a.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
			e.add(p+".directory", "must be an https:// URL, not %q", a.Directory)
		}
	}
	if a.Email != "" {
		if m, err := mail.ParseAddress(a.Email); err != nil || m.Address != a.Email {
			e.add(p+".email", "must be a bare e-mail address, not %q", a.Email)
		}
	}
	dns01 := a.Challenge == ChallengeDNS01
	if a.Challenge != "" && a.Challenge != ChallengeHTTP01 && !dns01 {
		e.add(p+".challenge", "must be %s or %s, not %q", ChallengeHTTP01, ChallengeDNS01, a.Challenge)
	}
	switch u := a.DNSUpdate; {
	case dns01 && u == nil:
		e.add(p+".dnsUpdate", "is required with challenge: dns-01 (the server that takes the TXT records)")
	case !dns01 && u != nil:
		e.add(p+".dnsUpdate", "is used only with challenge: dns-01")
	case u != nil:
		if why := nameserverProblem(u.Nameserver); why != "" {
			e.add(p+".dnsUpdate.nameserver", "%s", why)
		}
		if u.TSIGKeyFile == "" {
			e.add(p+".dnsUpdate.tsigKeyFile", "is required: updates are signed (TSIG)")
		}
		if u.Zone != "" && (!validHost(strings.TrimSuffix(u.Zone, ".")) || !strings.Contains(u.Zone, ".")) {
			e.add(p+".dnsUpdate.zone", "must be a DNS name, not %q", u.Zone)
		}
	}
	if a.KeyType != "" && !slices.Contains(acmeKeyTypes, a.KeyType) {
		e.add(p+".keyType", "must be one of %s, not %q", strings.Join(acmeKeyTypes, ", "), a.KeyType)
	}
	if a.EAB != nil {
		if a.EAB.KID == "" {
			e.add(p+".eab.kid", "is required")
		}
		if a.EAB.HMACKeyFile == "" {
			e.add(p+".eab.hmacKeyFile", "is required")
		}
	}
	if a.Hosts.FromRoutes {
		if len(s.ACMEHosts()) == 0 {
			e.add(p+".hosts", "is %s, but no route has a host", ACMEFromRoutes)
		}
	} else if len(a.Hosts.List) == 0 {
		e.add(p+".hosts", "is required: a list of hosts, or %s", ACMEFromRoutes)
	}
	if len(a.Hosts.List) > MaxACMEHosts || len(s.ACMEHosts()) > MaxACMEHosts {
		e.add(p+".hosts", "has %d hosts; at most %d", max(len(a.Hosts.List), len(s.ACMEHosts())), MaxACMEHosts)
		return
	}
	seen := map[string]int{}
	for i, h := range a.Hosts.List {
		path := fmt.Sprintf("%s.hosts[%d]", p, i)
		switch {
		case strings.HasPrefix(h, "*.") && !dns01:
			e.add(path, "%q is a wildcard, which needs the dns-01 challenge", h)
		case !validHost(strings.TrimPrefix(h, "*.")) || !strings.Contains(h, ".") || net.ParseIP(h) != nil:
			e.add(path, "must be a fully qualified DNS name (ASCII letters, digits, '-' and '.'), not %q", h)
		}
		if j, dup := seen[strings.ToLower(h)]; dup {
			e.add(path, "repeats hosts[%d]", j)
		}
		seen[strings.ToLower(h)] = i
	}
}

// ACMEFiles are the contents of the files an ACMESpec names.
type ACMEFiles struct {
	CABundle []byte // nil for the host's roots
	HMACKey  string // "" without EAB
	TSIG     *TSIGKey
}

// TSIGKey is a TSIG key as BIND's key clause gives it.
type TSIGKey struct {
	Name, Algorithm, Secret string
}

// Caps on the ACME files: a CA bundle and an EAB key.
const (
	MaxCABundleFile = 1 << 20
	MaxHMACKeyFile  = 4 << 10
	MaxTSIGKeyFile  = 4 << 10
)

// LoadACMEFiles reads the CA bundle and the EAB key file of a, each a
// regular file under root (the controller's --cert-root; "" for anywhere),
// capped in size. The CA bundle must hold a PEM certificate. Errors name
// the field and never quote the content.
func LoadACMEFiles(a *ACMESpec, root string) (ACMEFiles, *FieldError) {
	var out ACMEFiles
	if a == nil {
		return out, nil
	}
	read := func(path string, max int64) ([]byte, error) {
		if root == "" {
			return ReadRegularFile(path, max)
		}
		return readUnder(root, path, max)
	}
	if a.CABundle != "" {
		data, err := read(a.CABundle, MaxCABundleFile)
		if err == nil && !x509.NewCertPool().AppendCertsFromPEM(data) {
			err = fmt.Errorf("%s holds no PEM CERTIFICATE block", a.CABundle)
		}
		if err != nil {
			return out, &FieldError{Path: "spec.frontend.tls.acme.caBundle", Reason: err.Error()}
		}
		out.CABundle = data
	}
	if a.EAB != nil && a.EAB.HMACKeyFile != "" {
		data, err := read(a.EAB.HMACKeyFile, MaxHMACKeyFile)
		if err == nil && len(bytes.TrimSpace(data)) == 0 {
			err = fmt.Errorf("%s is empty", a.EAB.HMACKeyFile)
		}
		if err != nil {
			return out, &FieldError{Path: "spec.frontend.tls.acme.eab.hmacKeyFile", Reason: err.Error()}
		}
		out.HMACKey = string(bytes.TrimSpace(data))
	}
	if u := a.DNSUpdate; u != nil && u.TSIGKeyFile != "" {
		data, err := read(u.TSIGKeyFile, MaxTSIGKeyFile)
		if err == nil {
			out.TSIG, err = parseTSIGKey(u.TSIGKeyFile, data)
		}
		if err != nil {
			return out, &FieldError{Path: "spec.frontend.tls.acme.dnsUpdate.tsigKeyFile", Reason: err.Error()}
		}
	}
	return out, nil
}

// tsigClause matches BIND's key clause: key "NAME" { algorithm ALG;
// secret "BASE64"; }; (in either order).
var (
	tsigName      = regexp.MustCompile(`(?s)\bkey\s+"?([A-Za-z0-9._-]+)"?\s*\{`)
	tsigAlgorithm = regexp.MustCompile(`(?s)\balgorithm\s+"?([A-Za-z0-9.-]+)"?\s*;`)
	tsigSecret    = regexp.MustCompile(`(?s)\bsecret\s+"([A-Za-z0-9+/=]+)"\s*;`)
)

// parseTSIGKey reads a key clause; errors never quote the secret.
func parseTSIGKey(path string, data []byte) (*TSIGKey, error) {
	n, a, s := tsigName.FindSubmatch(data), tsigAlgorithm.FindSubmatch(data), tsigSecret.FindSubmatch(data)
	if n == nil || a == nil || s == nil {
		return nil, fmt.Errorf("%s is not a TSIG key in BIND's form (key \"NAME\" { algorithm hmac-sha256; secret \"...\"; };), as tsig-keygen prints", path)
	}
	alg := strings.ToLower(strings.TrimSuffix(string(a[1]), "."))
	if !slices.Contains([]string{"hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"}, alg) {
		return nil, fmt.Errorf("%s: algorithm %q is not one of hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512", path, alg)
	}
	if _, err := base64.StdEncoding.DecodeString(string(s[1])); err != nil {
		return nil, fmt.Errorf("%s: the secret is not base64", path)
	}
	return &TSIGKey{Name: string(n[1]), Algorithm: alg, Secret: string(s[1])}, nil
}

// nameserverProblem says what is wrong with a dnsUpdate nameserver
// (host or host:port), or "".
func nameserverProblem(ns string) string {
	if ns == "" {
		return "is required (host:port of the authoritative server)"
	}
	host, port := ns, "53"
	if h, p, err := net.SplitHostPort(ns); err == nil {
		host, port = h, p
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("port must be between 1 and 65535, not %q", port)
	}
	if net.ParseIP(host) == nil && !validHost(host) {
		return fmt.Sprintf("must be an address or DNS name with an optional :port, not %q", ns)
	}
	return ""
}
