package specs

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Character sets for every string that reaches haproxy.cfg, the runtime API
// or an Incus filter. None admits white space, '#', quotes, backslashes or
// '$', so no value can split a config line or start a comment.
var (
	dnsLabelRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	hostnameRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	instanceRE  = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	incusNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,62})$`)
	imageRE     = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9_.-]*:)?[A-Za-z0-9][A-Za-z0-9_./-]*$`)
	nameRE      = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,62}$`)
	pathRE      = regexp.MustCompile(`^/[A-Za-z0-9._~/%:@+,=-]*$`)
	cookieRE    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	configKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	labelValRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)
	nicRE       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)
)

const (
	maxDuration = 24 * time.Hour
	maxSlots    = 1000
	maxFallRise = 100

	maxPools         = 256
	maxRoutes        = 1024
	maxServers       = 1024 // per pool
	maxSelectorKeys  = 64   // per pool
	maxExpectStatus  = 64   // characters
	maxStatusRepeats = 3    // the largest n or m in {n} and {n,m}
)

// Validate checks one defaulted LoadBalancer and returns every problem, each
// with its field path. It does no I/O; see ValidateFiles for the files a
// spec names.
func Validate(lb *LoadBalancer) ErrorList {
	var e errs
	if lb.APIVersion != APIVersion {
		e.add("apiVersion", "must be %q, not %q", APIVersion, lb.APIVersion)
	}
	if lb.Kind != Kind {
		e.add("kind", "must be %q, not %q", Kind, lb.Kind)
	}
	if !dnsLabelRE.MatchString(lb.Metadata.Name) {
		e.add("metadata.name", "must be a DNS label (lower-case letters, digits and '-', at most 63), not %q", lb.Metadata.Name)
	}
	s := &lb.Spec
	validateInstance(&e, &s.Instance)
	validateHA(&e, s)
	validatePorts(&e, s)
	validateDefaults(&e, &s.Defaults)

	pools := map[string]int{}
	for i := range s.Pools {
		p := &s.Pools[i]
		path := fmt.Sprintf("spec.pools[%d]", i)
		if j, dup := pools[p.Name]; dup && p.Name != "" {
			e.add(path+".name", "duplicate pool name %q (also spec.pools[%d])", p.Name, j)
		} else {
			pools[p.Name] = i
		}
		validatePool(&e, path, p)
	}
	if len(s.Pools) == 0 {
		e.add("spec.pools", "at least one pool is required")
	}
	if len(s.Pools) > maxPools {
		e.add("spec.pools", "at most %d pools, not %d", maxPools, len(s.Pools))
	}
	validateRoutes(&e, s.Routes, pools)
	validateTCP(&e, s, pools)
	for i, r := range s.Routes {
		if j, ok := pools[r.Pool]; ok && s.Pools[j].Mode == ModeTCP {
			e.add(fmt.Sprintf("spec.routes[%d].pool", i), "pool %q has mode: tcp; routes send HTTP requests (use spec.tcp for it)", r.Pool)
		}
	}
	return e.list
}

func validateInstance(e *errs, in *InstanceSpec) {
	if !instanceRE.MatchString(in.Name) {
		e.add("spec.instance.name", "must be an Incus instance name (letters, digits and '-', starting with a letter, at most 63), not %q", in.Name)
	}
	if !incusNameRE.MatchString(in.Project) {
		e.add("spec.instance.project", "must be an Incus project name, not %q", in.Project)
	}
	if !imageRE.MatchString(in.Image) {
		e.add("spec.instance.image", "must be an image alias or remote:alias, not %q", in.Image)
	}
	for i, p := range in.Profiles {
		if !incusNameRE.MatchString(p) {
			e.add(fmt.Sprintf("spec.instance.profiles[%d]", i), "must be an Incus profile name, not %q", p)
		}
	}
}

// ReservedPort is the port of haproxy.ParkedAddress (haproxy.ParkedPort):
// the LB binds nothing there, so the checks of parked slots keep failing.
const ReservedPort = 1

func validatePorts(e *errs, s *LoadBalancerSpec) {
	type use struct{ path string }
	seen := map[int]string{}
	check := func(path string, port int) {
		if port < 1 || port > 65535 {
			e.add(path, "must be between 1 and 65535, not %d", port)
			return
		}
		if port == ReservedPort {
			e.add(path, "port %d is reserved: incuslb parks the free slots of its pools at 127.0.0.1:%d, where nothing may answer", port, port)
			return
		}
		if other, dup := seen[port]; dup {
			e.add(path, "port %d is already used by %s", port, other)
			return
		}
		seen[port] = path
	}
	check("spec.frontend.httpPort", s.Frontend.HTTPPort)
	if s.Frontend.TLS != nil {
		check("spec.frontend.httpsPort", s.Frontend.HTTPSPort)
		validateCertificates(e, s.Frontend.TLS)
		if s.Frontend.TLS.ACME != nil {
			validateACME(e, s)
		}
		if s.Frontend.TLS.HSTS != nil {
			validateHSTS(e, s.Frontend.TLS.HSTS)
		}
	} else if s.Frontend.HTTPSPort < 1 || s.Frontend.HTTPSPort > 65535 {
		e.add("spec.frontend.httpsPort", "must be between 1 and 65535, not %d", s.Frontend.HTTPSPort)
	}
	check("spec.stats.port", s.Stats.Port)
	for i, l := range s.TCP {
		check(fmt.Sprintf("spec.tcp[%d].port", i), l.Port)
	}
	if seen[PeersPort] != "" {
		e.add(seen[PeersPort], "port %d is reserved: the rate limits' stick tables sync through it (127.0.0.1)", PeersPort)
	}
}

// MaxCertificates bounds the certificates of one LoadBalancer.
const MaxCertificates = 1000

func validateCertificates(e *errs, t *TLSSpec) {
	if len(t.CertificateFiles()) == 0 && t.ACME == nil {
		e.add("spec.frontend.tls.certificateFile", "is required when tls is set (or give spec.frontend.tls.certificates or spec.frontend.tls.acme)")
	}
	if len(t.Certificates) > MaxCertificates {
		e.add("spec.frontend.tls.certificates", "has %d entries; at most %d", len(t.Certificates), MaxCertificates)
		return
	}
	seen := map[string]string{}
	if t.CertificateFile != "" {
		seen[filepath.Clean(t.CertificateFile)] = "spec.frontend.tls.certificateFile"
	}
	for i, c := range t.Certificates {
		path := fmt.Sprintf("spec.frontend.tls.certificates[%d].file", i)
		switch {
		case c.File == "":
			e.add(path, "is required")
		case seen[filepath.Clean(c.File)] != "":
			e.add(path, "names the same file as %s", seen[filepath.Clean(c.File)])
		default:
			seen[filepath.Clean(c.File)] = path
		}
	}
}

func validateDefaults(e *errs, d *DefaultsSpec) {
	validateCheck(e, "spec.defaults.healthCheck", &d.HealthCheck, true)
	validateDuration(e, "spec.defaults.slowStart", d.SlowStart, 0)
	validateDuration(e, "spec.defaults.drainTimeout", d.DrainTimeout, 0)
	validateJoin(e, "spec.defaults.join", d.Join)
	validateDuration(e, "spec.defaults.timeouts.connect", d.Timeouts.Connect, time.Millisecond)
	validateDuration(e, "spec.defaults.timeouts.client", d.Timeouts.Client, time.Millisecond)
	validateDuration(e, "spec.defaults.timeouts.server", d.Timeouts.Server, time.Millisecond)
	validateDuration(e, "spec.defaults.timeouts.tunnel", d.Timeouts.Tunnel, time.Millisecond)
	validateDuration(e, "spec.defaults.hardStopAfter", d.HardStopAfter, time.Second)
	validateDuration(e, "spec.defaults.closeSpreadTime", d.CloseSpreadTime, 0)
	if d.CloseSpreadTime.Duration > d.HardStopAfter.Duration {
		e.add("spec.defaults.closeSpreadTime", "must not be longer than hardStopAfter (%v)", d.HardStopAfter.Duration)
	}
	validateSlots(e, "spec.defaults.slots", d.Slots)
}

func validatePool(e *errs, path string, p *Pool) {
	validateRateLimit(e, path+".rateLimit", p.RateLimit)
	validateTCPPool(e, path, p)
	validateCanary(e, path, p)
	if strings.HasPrefix(p.Name, "rl_") {
		e.add(path+".name", "must not start with rl_ (the rate limits' tables are named so), not %q", p.Name)
	}
	if !nameRE.MatchString(p.Name) {
		e.add(path+".name", "must start with a letter and hold only letters, digits, '_', '.' and '-' (at most 63), not %q", p.Name)
	}
	switch {
	case len(p.Selector) > 0 && len(p.Servers) > 0:
		e.add(path, "set either selector or servers, not both")
	case len(p.Selector) == 0 && len(p.Servers) == 0:
		e.add(path, "one of selector or servers is required")
	case len(p.Selector) > 0:
		if len(p.Selector) > maxSelectorKeys {
			e.add(path+".selector", "at most %d keys, not %d", maxSelectorKeys, len(p.Selector))
		}
		validateSelector(e, path+".selector", p.Selector)
		if p.Port < 1 || p.Port > 65535 {
			e.add(path+".port", "must be between 1 and 65535 for a selector pool, not %d", p.Port)
		}
		if !incusNameRE.MatchString(p.Project) {
			e.add(path+".project", "must be an Incus project name, not %q", p.Project)
		}
		if !nicRE.MatchString(p.NIC) {
			e.add(path+".nic", "must be a NIC name such as eth0, not %q", p.NIC)
		}
		validateFamily(e, path+".family", p.Family)
		validateSlots(e, path+".slots", p.Slots)
	default:
		if p.Port != 0 {
			e.add(path+".port", "applies to selector pools only; a static server carries its port in address")
		}
		if p.Slots != 0 {
			e.add(path+".slots", "applies to selector pools only")
		}
		if p.Project != "" || p.NIC != "" {
			e.add(path, "project and nic apply to selector pools only")
		}
		if p.Family != "" {
			e.add(path+".family", "applies to selector pools only; a static server's address says its family")
		}
		if len(p.Servers) > maxServers {
			e.add(path+".servers", "at most %d servers, not %d", maxServers, len(p.Servers))
		}
		names := map[string]bool{}
		for i, srv := range p.Servers {
			sp := fmt.Sprintf("%s.servers[%d]", path, i)
			if !nameRE.MatchString(srv.Name) {
				e.add(sp+".name", "must start with a letter and hold only letters, digits, '_', '.' and '-' (at most 63), not %q", srv.Name)
			} else if names[srv.Name] {
				e.add(sp+".name", "duplicate server name %q", srv.Name)
			}
			names[srv.Name] = true
			if reason := checkAddress(srv.Address); reason != "" {
				e.add(sp+".address", "%s", reason)
			}
		}
	}
	switch p.Balance {
	case BalanceRoundRobin, BalanceLeastConn, BalanceURI:
	default:
		e.add(path+".balance", "must be one of roundrobin, leastconn or uri, not %q", p.Balance)
	}
	if p.Sticky != nil {
		if !cookieRE.MatchString(p.Sticky.Cookie) {
			e.add(path+".sticky.cookie", "must be a cookie name of letters, digits, '_' and '-' (at most 64), not %q", p.Sticky.Cookie)
		}
		if p.Balance == BalanceURI {
			e.add(path+".sticky", "does not combine with balance uri (the URI hash already pins a client)")
		}
	}
	validateCheck(e, path+".healthCheck", &p.HealthCheck, p.Mode != ModeTCP)
	validateDuration(e, path+".slowStart", p.SlowStart, 0)
	switch {
	case len(p.Servers) > 0 && p.Join != "":
		e.add(path+".join", "applies to selector pools only (static servers never join at run time)")
	case len(p.Servers) == 0:
		validateJoin(e, path+".join", p.Join)
	}
	if t := p.BackendTLS; t != nil {
		if t.Verify != VerifyNone && t.Verify != VerifyRequired {
			e.add(path+".backendTLS.verify", "must be none or required, not %q", t.Verify)
		}
		if t.SNI != "" && !validHost(t.SNI) {
			e.add(path+".backendTLS.sni", "must be a DNS name (ASCII letters, digits, '-' and '.'), not %q", t.SNI)
		}
		switch {
		case t.VerifyHost != "" && !validHost(t.VerifyHost):
			e.add(path+".backendTLS.verifyHost", "must be a DNS name (ASCII letters, digits, '-' and '.'), not %q", t.VerifyHost)
		case t.VerifyHost != "" && t.Verify == VerifyNone:
			e.add(path+".backendTLS.verifyHost", "has no effect with verify: none (nothing is verified)")
		case t.VerifyHost == "" && t.SNI == "" && t.Verify == VerifyRequired:
			e.add(path+".backendTLS.verifyHost", "is required with verify: required when sni is not set: "+
				"without a name HAProxy checks the certificate chain but not the host name, so any certificate from a trusted CA would pass")
		}
		if t.CA != "" && t.Verify == VerifyNone {
			e.add(path+".backendTLS.ca", "has no effect with verify: none (nothing is verified)")
		}
	}
}

// validateCheck checks a health check; http says whether its HTTP fields
// (path, host, expectStatus) apply (a tcp pool's are checked apart).
func validateCheck(e *errs, path string, c *HealthCheck, http bool) {
	validateDuration(e, path+".interval", c.Interval, 100*time.Millisecond)
	if c.FastInterval.Set {
		validateDuration(e, path+".fastInterval", c.FastInterval, 100*time.Millisecond)
	}
	validateDuration(e, path+".downInterval", c.DownInterval, 100*time.Millisecond)
	if c.Timeout.Set {
		validateDuration(e, path+".timeout", c.Timeout, 100*time.Millisecond)
	}
	if c.Fall < 1 || c.Fall > maxFallRise {
		e.add(path+".fall", "must be between 1 and %d, not %d", maxFallRise, c.Fall)
	}
	if c.Rise < 1 || c.Rise > maxFallRise {
		e.add(path+".rise", "must be between 1 and %d, not %d", maxFallRise, c.Rise)
	}
	if !http {
		return
	}
	if !pathRE.MatchString(c.Path) || len(c.Path) > 1024 {
		e.add(path+".path", "must start with '/' and hold only URL characters (no spaces, quotes, '#' or '\\'), not %q", c.Path)
	}
	if !validHost(c.Host) {
		e.add(path+".host", "must be a DNS name (ASCII letters, digits, '-' and '.') or IPv4 address, not %q", c.Host)
	}
	if !validExpectStatus(c.ExpectStatus) {
		e.add(path+".expectStatus", "must be a status pattern: an optional '^', then digits, '.', digit classes such as [23] or [0-9] "+
			"and groups such as (200|204) (not nested), each with at most one '?', {n} or {n,m} (n, m at most %d), "+
			"then an optional '$'; at most %d characters; not %q", maxStatusRepeats, maxExpectStatus, c.ExpectStatus)
	}
}

func validateRoutes(e *errs, routes []Route, pools map[string]int) {
	if len(routes) == 0 {
		e.add("spec.routes", "at least one route is required (a route with only pool: NAME sends everything there)")
	}
	if len(routes) > maxRoutes {
		e.add("spec.routes", "at most %d routes, not %d", maxRoutes, len(routes))
	}
	matches := map[string]int{}
	for i, r := range routes {
		path := fmt.Sprintf("spec.routes[%d]", i)
		if _, ok := pools[r.Pool]; !ok {
			e.add(path+".pool", "names no pool in spec.pools: %q", r.Pool)
		}
		if r.Host != "" && !validHost(r.Host) {
			e.add(path+".host", "must be a DNS name (ASCII letters, digits, '-' and '.'), not %q", r.Host)
		}
		if r.PathPrefix != "" && (!pathRE.MatchString(r.PathPrefix) || len(r.PathPrefix) > 1024) {
			e.add(path+".pathPrefix", "must start with '/' and hold only URL characters (no spaces, quotes, '#' or '\\'), not %q", r.PathPrefix)
		}
		validateHeaders(e, path, r.Headers)
		validateRateLimit(e, path+".rateLimit", r.RateLimit)
		if r.Host == "" && r.PathPrefix == "" && i != len(routes)-1 {
			e.add(path, "matches every request, so the routes after it never match; move it last")
		}
		key := strings.ToLower(r.Host) + "\x00" + r.PathPrefix
		if j, dup := matches[key]; dup {
			e.add(path, "never matches: spec.routes[%d] has the same host and pathPrefix", j)
		} else {
			matches[key] = i
		}
	}
}

func validateJoin(e *errs, path, join string) {
	if join != JoinChecked && join != JoinImmediate {
		e.add(path, "must be %s or %s, not %q", JoinChecked, JoinImmediate, join)
	}
}

func validateDuration(e *errs, path string, d Duration, lowest time.Duration) {
	switch {
	case d.Duration < lowest || d.Duration < 0:
		e.add(path, "must be at least %v, not %v", lowest, d.Duration)
	case d.Duration > maxDuration:
		e.add(path, "must be at most %v, not %v", maxDuration, d.Duration)
	case d.Duration%time.Millisecond != 0:
		e.add(path, "must be a whole number of milliseconds, not %v", d.Duration)
	}
}

func validateSlots(e *errs, path string, n int) {
	if n < 1 || n > maxSlots {
		e.add(path, "must be between 1 and %d, not %d", maxSlots, n)
	}
}
