package specs

import (
	"path/filepath"
	"time"
)

// The seed role's defaults.
const (
	DefaultProject      = "default"
	DefaultImage        = "images:debian/12"
	DefaultProfile      = "default"
	DefaultHTTPPort     = 80
	DefaultHTTPSPort    = 443
	DefaultStatsPort    = 9100
	DefaultFall         = 3
	DefaultRise         = 2
	DefaultCheckPath    = "/"
	DefaultCheckHost    = "localhost"
	DefaultExpectStatus = "^[23]"
	DefaultSlots        = 16
	DefaultNIC          = "eth0"
)

// Default durations.
var (
	DefaultInterval     = 5 * time.Second
	DefaultSlowStart    = 30 * time.Second
	DefaultDownInterval = 250 * time.Millisecond
	DefaultDrainTimeout = 30 * time.Second
	DefaultConnect      = 5 * time.Second
	DefaultClient       = 60 * time.Second
	DefaultServer       = 60 * time.Second
	DefaultTunnel       = time.Hour
)

// SetDefaults fills every unset field with its default, in place. It is
// idempotent. A duration given as "0s" is set (zero), not unset: an explicit
// slowStart or drainTimeout of 0s means none. Pools inherit spec.defaults field by field. A relative
// certificate path is made relative to the directory of lb.Source.
func SetDefaults(lb *LoadBalancer) {
	s := &lb.Spec
	orString(&s.Instance.Name, lb.Metadata.Name)
	orString(&s.Instance.Project, DefaultProject)
	orString(&s.Instance.Image, DefaultImage)
	if len(s.Instance.Profiles) == 0 {
		s.Instance.Profiles = []string{DefaultProfile}
	}
	setHADefaults(s.HighAvailability)
	orInt(&s.Frontend.HTTPPort, DefaultHTTPPort)
	orInt(&s.Frontend.HTTPSPort, DefaultHTTPSPort)
	if t := s.Frontend.TLS; t != nil && lb.Source != "" && lb.Source != "<stdin>" {
		relative := func(f *string) {
			if *f != "" && !filepath.IsAbs(*f) {
				*f = filepath.Join(filepath.Dir(lb.Source), *f)
			}
		}
		relative(&t.CertificateFile)
		if a := t.ACME; a != nil {
			relative(&a.CABundle)
			if a.EAB != nil {
				relative(&a.EAB.HMACKeyFile)
			}
			if a.DNSUpdate != nil {
				relative(&a.DNSUpdate.TSIGKeyFile)
			}
		}
		for i := range t.Certificates {
			relative(&t.Certificates[i].File)
		}
	}
	if t := s.Frontend.TLS; t != nil {
		setACMEDefaults(t.ACME)
	}
	orInt(&s.Stats.Port, DefaultStatsPort)

	d := &s.Defaults
	inheritCheck(&d.HealthCheck, HealthCheck{
		Interval: Dur(DefaultInterval), Fall: DefaultFall, Rise: DefaultRise,
		Path: DefaultCheckPath, Host: DefaultCheckHost, ExpectStatus: DefaultExpectStatus,
		DownInterval: Dur(DefaultDownInterval),
	})
	orDur(&d.SlowStart, Dur(DefaultSlowStart))
	orDur(&d.DrainTimeout, Dur(DefaultDrainTimeout))
	orDur(&d.Timeouts.Connect, Dur(DefaultConnect))
	orDur(&d.Timeouts.Client, Dur(DefaultClient))
	orDur(&d.Timeouts.Server, Dur(DefaultServer))
	orDur(&d.Timeouts.Tunnel, Dur(DefaultTunnel))
	// Old workers live as long as a tunnel may (a bad tunnel is reported
	// on its own field, not twice).
	orDur(&d.HardStopAfter, Dur(min(d.Timeouts.Tunnel.Duration, maxDuration)))
	orInt(&d.Slots, DefaultSlots)
	orString(&d.Join, JoinChecked)

	for i := range s.Pools {
		p := &s.Pools[i]
		orString(&p.Balance, BalanceRoundRobin)
		orString(&p.Mode, ModeHTTP)
		def := d.HealthCheck
		if p.Mode == ModeTCP {
			// A tcp pool's check is a connect or its tcpCheck: the HTTP
			// fields stay empty (and are refused if set; see validateTCPPool).
			def.Path, def.Host, def.ExpectStatus = "", "", ""
		}
		inheritCheck(&p.HealthCheck, def)
		orDur(&p.SlowStart, d.SlowStart)
		if p.BackendTLS != nil {
			orString(&p.BackendTLS.Verify, VerifyRequired)
		}
		if len(p.Servers) == 0 {
			orString(&p.Project, s.Instance.Project)
			orString(&p.NIC, DefaultNIC)
			orString(&p.Family, FamilyIPv4)
			orInt(&p.Slots, d.Slots)
			orString(&p.Join, d.Join)
		}
	}
}

// inheritCheck fills the unset fields of c from def.
func inheritCheck(c *HealthCheck, def HealthCheck) {
	orDur(&c.Interval, def.Interval)
	orInt(&c.Fall, def.Fall)
	orInt(&c.Rise, def.Rise)
	orDur(&c.FastInterval, def.FastInterval)
	orDur(&c.DownInterval, def.DownInterval)
	orDur(&c.Timeout, def.Timeout)
	orString(&c.Path, def.Path)
	orString(&c.Host, def.Host)
	orString(&c.ExpectStatus, def.ExpectStatus)
}

func orString(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func orInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

// orDur fills a duration the spec left out; an explicit "0s" stays zero.
func orDur(p *Duration, v Duration) {
	if p.IsZero() {
		*p = v
	}
}
