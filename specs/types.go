package specs

// APIVersion and Kind identify a LoadBalancer document.
const (
	APIVersion = "incuslb/v1alpha1"
	Kind       = "LoadBalancer"
)

// LoadBalancer is one HAProxy load balancer: the container that runs it, its
// listeners, its routes and its pools of backends.
type LoadBalancer struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Metadata   ObjectMeta       `json:"metadata"`
	Spec       LoadBalancerSpec `json:"spec"`

	// Source is the file the object was read from, for error messages and
	// for resolving relative certificate paths. It is not part of the spec.
	Source string `json:"-"`
	// Revision is the git commit the object was read at, when it came from
	// a repository. Not part of the spec.
	Revision string `json:"-"`
	// Doc is the 1-based index of the document within Source, or 0 when
	// Source holds one document. Not part of the spec.
	Doc int `json:"-"`
	// ReplicaOf is set on the copy of the spec that one replica of a pair
	// runs (its spec.instance.name is the replica's): the name the
	// replicas' names derive from. Not part of the spec.
	ReplicaOf string `json:"-"`
}

// ObjectMeta names the object. Name is a DNS label and names the LB
// everywhere (metrics, status keys, the certificate file in the container).
type ObjectMeta struct {
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// LoadBalancerSpec is the desired state of one load balancer.
type LoadBalancerSpec struct {
	Instance InstanceSpec `json:"instance"`
	// HighAvailability runs replicas behind a virtual address (see
	// HighAvailabilitySpec). Without it, one instance runs the LB.
	HighAvailability *HighAvailabilitySpec `json:"highAvailability,omitempty"`
	Frontend         FrontendSpec          `json:"frontend"`
	Stats            StatsSpec             `json:"stats"`
	Defaults         DefaultsSpec          `json:"defaults"`
	Routes           []Route               `json:"routes"`
	// TCP are TCP services, each to a pool with mode: tcp.
	TCP   []TCPListener `json:"tcp,omitempty"`
	Pools []Pool        `json:"pools"`
}

// InstanceSpec is the Incus container that runs HAProxy.
type InstanceSpec struct {
	// Name of the instance; on the Incus bridge it is reachable as NAME.lxd.
	// Default: metadata.name.
	Name string `json:"name,omitempty"`
	// Project is the Incus project of the instance. Default: "default".
	Project string `json:"project,omitempty"`
	// Image is a local alias ("lb-haproxy") or remote:alias
	// ("images:debian/12"). When the image lacks haproxy it is installed.
	// Default: "images:debian/12".
	Image string `json:"image,omitempty"`
	// Profiles applied at creation. Default: [default].
	Profiles []string `json:"profiles,omitempty"`
	// Adopt lets the LoadBalancer take over an instance of this name that
	// already exists. Adopting an existing instance that carries no
	// user.incuslb.lb owner key takes adopt: true; an instance owned by
	// another LoadBalancer is never taken. Default: false.
	Adopt bool `json:"adopt,omitempty"`
}

// FrontendSpec is what clients connect to.
type FrontendSpec struct {
	HTTPPort  int      `json:"httpPort,omitempty"`  // default 80
	HTTPSPort int      `json:"httpsPort,omitempty"` // default 443; bound only with tls
	TLS       *TLSSpec `json:"tls,omitempty"`
	// IPv6 listens on IPv6 too: every listener (http, https and the tcp
	// listeners) is bound on [::] beside its IPv4 bind. Default false.
	IPv6 bool `json:"ipv6,omitempty"`
}

// TLSSpec turns on TLS termination.
type TLSSpec struct {
	// CertificateFile is a PEM file on the controller host holding the
	// certificate chain and its private key. A relative path is relative to
	// the spec file. It is the shorthand for a one-entry Certificates; with
	// both, it comes first.
	CertificateFile string `json:"certificateFile,omitempty"`
	// Certificates are served by SNI: HAProxy picks the one whose names
	// match the name the client asks for, and the first (the default)
	// when none does.
	Certificates []CertificateSource `json:"certificates,omitempty"`
	// ACME obtains and renews certificates for hosts from an ACME CA; they
	// are served by SNI after the files' certificates.
	ACME *ACMESpec `json:"acme,omitempty"`
	// HSTS sends Strict-Transport-Security on https answers.
	HSTS *HSTSSpec `json:"hsts,omitempty"`
	// RedirectHTTP answers plain HTTP requests with a 301 to https (ACME's
	// HTTP-01 challenges are answered before it).
	RedirectHTTP bool `json:"redirectHTTP,omitempty"`
}

// CertificateSource is where one certificate comes from.
type CertificateSource struct {
	// File is a PEM file on the controller host (chain and private key),
	// as CertificateFile.
	File string `json:"file"`
}

// CertificateFiles are the files of every certificate, the default first:
// CertificateFile, then Certificates' files.
func (t *TLSSpec) CertificateFiles() []string {
	var out []string
	if t.CertificateFile != "" {
		out = append(out, t.CertificateFile)
	}
	for _, c := range t.Certificates {
		out = append(out, c.File)
	}
	return out
}

// StatsSpec is the stats page and Prometheus endpoint. It is bound to
// 127.0.0.1 inside the container only.
type StatsSpec struct {
	Port int `json:"port,omitempty"` // default 9100
}

// DefaultsSpec holds values every pool inherits unless it sets its own.
type DefaultsSpec struct {
	HealthCheck HealthCheck `json:"healthCheck"`
	// SlowStart is how long a joining or recovered server ramps its weight
	// up. Default 30s when left out; "0s" means no ramp.
	SlowStart Duration `json:"slowStart,omitzero"`
	// DrainTimeout is how long a leaving member may finish its sessions.
	// Default 30s when left out; "0s" parks a leaving member at once.
	DrainTimeout Duration `json:"drainTimeout,omitzero"`
	Timeouts     Timeouts `json:"timeouts"`
	// HardStopAfter bounds how long an old worker lives after a reload: the
	// process that keeps serving the sessions (WebSockets) opened before it.
	// An old worker exits as soon as its last session ends, and incuslb
	// closes its sessions to backends that went down or left; this is the
	// bound for the rest. Shorter cuts long-lived sessions at a reload
	// sooner; longer lets old workers (and their memory) pile up over
	// frequent reloads. Default: timeouts.tunnel (1h).
	HardStopAfter Duration `json:"hardStopAfter,omitzero"`
	// CloseSpreadTime spreads, over this window after a reload, the closing
	// of the old worker's idle keep-alive connections, so that clients do not
	// all reconnect in the same instant. Default 0s: all at once.
	CloseSpreadTime Duration `json:"closeSpreadTime,omitzero"`
	// Slots is how many server slots a selector pool gets in haproxy.cfg, so
	// that members can join at run time without a reload. Default 16.
	Slots int `json:"slots,omitempty"`
	// Join is when a member that joins a selector pool gets its first
	// client request: "checked" (default) after it passed health checks
	// (rise of them; the first runs within downInterval), "immediate" at
	// once, as soon as its slot fills (a request sent before its service
	// listens is refused and redispatched).
	Join string `json:"join,omitempty"`
}

// Join modes.
const (
	JoinChecked   = "checked"
	JoinImmediate = "immediate"
)

// Timeouts are HAProxy's connection timeouts. Tunnel applies to upgraded
// (WebSocket) connections.
type Timeouts struct {
	Connect Duration `json:"connect,omitzero"` // default 5s
	Client  Duration `json:"client,omitzero"`  // default 60s
	Server  Duration `json:"server,omitzero"`  // default 60s
	Tunnel  Duration `json:"tunnel,omitzero"`  // default 1h
}

// HealthCheck is an HTTP health check. Every field left empty in a pool is
// taken from spec.defaults.healthCheck.
type HealthCheck struct {
	Interval Duration `json:"interval,omitzero"` // default 5s
	Fall     int      `json:"fall,omitempty"`    // default 3
	Rise     int      `json:"rise,omitempty"`    // default 2
	// FastInterval is the interval while a server's health is in
	// transition: after a failed check of an UP server (so it falls
	// sooner) and after a passed check of a DOWN one (so it rises sooner).
	// HAProxy's fastinter. Default: interval.
	FastInterval Duration `json:"fastInterval,omitzero"`
	// DownInterval is the interval while a server is DOWN, and how soon a
	// joining member gets its first check (a parked slot waits on this
	// timer). HAProxy's downinter. Default 250ms.
	DownInterval Duration `json:"downInterval,omitzero"`
	// Timeout is how long a check waits for the server's answer once
	// connected (HAProxy's `timeout check`); the connection itself must
	// be made within timeouts.connect, so that a server whose host is
	// gone (no answer at all) fails its check in that time, not in a
	// whole interval. Default: the interval.
	Timeout Duration `json:"timeout,omitzero"`
	// Path requested with GET. Default "/".
	Path string `json:"path,omitempty"`
	// Host header sent with the check. Default "localhost".
	Host string `json:"host,omitempty"`
	// ExpectStatus is a pattern the status code must match (HAProxy's
	// `http-check expect rstatus`). Default "^[23]" (any 2xx or 3xx).
	//
	// It is a small regular-expression language that Go and HAProxy's PCRE
	// read the same way, at most 64 characters:
	//
	//	pattern := ["^"] item {item} ["$"]
	//	item    := atom [quant] | "(" seq {"|" seq} ")" [quant]
	//	seq     := atom [quant] {atom [quant]}
	//	atom    := digit | "." | "[" range {range} "]"
	//	range   := digit | digit "-" digit          (ascending)
	//	quant   := "?" | "{" n "}" | "{" n "," m "}"  (0 <= n <= m <= 3, m >= 1)
	//
	// So: digits, '.', classes of digits and digit ranges (no negation),
	// one level of groups, and no '*' or '+'. Examples: "^[23]",
	// "^(200|204)$", "^2[0-9]{2}$".
	ExpectStatus string `json:"expectStatus,omitempty"`
}

// Route sends matching requests to a pool. Routes are tried in order and the
// first match wins; a route with neither host nor pathPrefix matches
// everything and must come last.
type Route struct {
	Host       string `json:"host,omitempty"`
	PathPrefix string `json:"pathPrefix,omitempty"`
	Pool       string `json:"pool"`
	// Headers changes the route's requests and their answers.
	Headers Headers `json:"headers,omitzero"`
	// RateLimit caps each client's requests on this route.
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
}

// Balance algorithms.
const (
	BalanceRoundRobin = "roundrobin"
	BalanceLeastConn  = "leastconn"
	BalanceURI        = "uri" // balance uri whole + hash-type consistent
)

// Pool is a backend: either the Incus instances a selector picks, or a fixed
// list of servers.
type Pool struct {
	Name string `json:"name"`
	// Selector picks running Incus instances whose config has every key
	// with the given value, e.g. {user.role: api}.
	Selector map[string]string `json:"selector,omitempty"`
	// Project the selector looks in. Default: spec.instance.project.
	Project string `json:"project,omitempty"`
	// NIC whose global address a member is reached on. Default eth0.
	NIC string `json:"nic,omitempty"`
	// Family is the address family a member is reached on: ipv4 (its
	// global IPv4 address), ipv6 (its global IPv6 address, unique local
	// fc00::/7 included, link-local never) or any (its IPv4 address when
	// it has one, else its IPv6 one). Default ipv4.
	Family string `json:"family,omitempty"`
	// Port members listen on (selector pools).
	Port int `json:"port,omitempty"`
	// Servers are static members (no selector).
	Servers []Server `json:"servers,omitempty"`

	Balance     string      `json:"balance,omitempty"` // default roundrobin
	Sticky      *Sticky     `json:"sticky,omitempty"`
	HealthCheck HealthCheck `json:"healthCheck"`
	BackendTLS  *BackendTLS `json:"backendTLS,omitempty"`
	SlowStart   Duration    `json:"slowStart,omitzero"` // default spec.defaults.slowStart; "0s" means none
	Slots       int         `json:"slots,omitempty"`    // default spec.defaults.slots
	Join        string      `json:"join,omitempty"`     // default spec.defaults.join
	// RateLimit caps each client's requests to this pool, whichever
	// route sent them.
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
	// Mode is http (default: routes send requests here) or tcp (a TCP
	// listener sends connections here, unchanged).
	Mode string `json:"mode,omitempty"`
	// TCPCheck is a send/expect check for a tcp pool; without it a check
	// is a TCP connect.
	TCPCheck *TCPCheck `json:"tcpCheck,omitempty"`
	// ProxyProtocol sends the client's address to the servers with the
	// PROXY protocol: v1 or v2. Default: none.
	ProxyProtocol string `json:"proxyProtocol,omitempty"`
	// Canary sends a share of the pool's new sessions to the instances
	// another selector picks, in the same backend (selector pools only).
	Canary *Canary `json:"canary,omitempty"`
}

// Server is a static pool member.
type Server struct {
	Name    string `json:"name"`
	Address string `json:"address"` // host:port; host is an IPv4 address, [an IPv6 address] or a DNS name
}

// Sticky pins a client to a server with a cookie HAProxy inserts. Cookie
// values are derived from each server's address (dynamic cookies), so they
// stay stable across reloads and slot changes.
type Sticky struct {
	Cookie string `json:"cookie"`
}

// TLS verification modes for backend connections.
const (
	VerifyNone     = "none"
	VerifyRequired = "required"
)

// BackendTLS re-encrypts traffic to the pool's servers.
type BackendTLS struct {
	// Verify is "none" or "required" (against the system CA store).
	Verify string `json:"verify,omitempty"` // default required
	// SNI sent to the server, and used for health checks.
	SNI string `json:"sni,omitempty"`
	// VerifyHost is the name the server's certificate must carry when
	// Verify is "required". Default: SNI. With verify required, one of
	// them must be set: without a name only the chain is checked, and any
	// certificate from a trusted CA would do.
	VerifyHost string `json:"verifyHost,omitempty"`
	// ClientCertificateFile is a PEM file on the controller's host (under
	// its certificate root, like frontend certificate files): the client
	// certificate, its chain and its private key, which HAProxy presents
	// to the servers (mutual TLS). A change is applied through HAProxy's
	// runtime API, with no reload.
	ClientCertificateFile string `json:"clientCertificateFile,omitempty"`
	// CA is a PEM file of CA certificates on the controller's host (under
	// its certificate root) that the servers' certificates must chain to,
	// instead of the system CA store. Needs verify: required. A change is
	// applied through HAProxy's runtime API, with no reload.
	CA string `json:"ca,omitempty"`
}
