package acme

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/acme/api"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/lego"
	legolog "github.com/go-acme/lego/v5/log"
	"github.com/go-acme/lego/v5/registration"
	"github.com/go-logr/logr"
)

// DNS01Options is what a DNS-01 provider may also implement: options of
// lego's DNS-01 challenge, such as how to check that a record is in place.
type DNS01Options interface {
	DNS01Options() []dns01.ChallengeOption
}

// userAgent goes before lego's own in the User-Agent header.
const userAgent = "incuslb"

// issuanceTimeout bounds the wait for the CA to issue once the order is
// finalized (lego's CertificateConfig.Timeout).
const issuanceTimeout = 90 * time.Second

// Client is an ACME account at one CA and what it does there. Its methods
// may be called concurrently: each Obtain uses a lego client of its own.
type Client struct {
	cfg       Config
	log       logr.Logger
	transport *http.Transport
	key       crypto.Signer
	dir       string // StateDir/accounts/<hash>

	mu  sync.Mutex            // guards reg and registering
	reg *acme.ExtendedAccount // nil until registered
}

// legoLogOnce routes lego's package-wide log to the first Client's logger.
var legoLogOnce sync.Once

// New loads or creates the account key under
// StateDir/accounts/<hash of directory and email>/ and the registration
// kept there, if any. It does not talk to the CA: the account is
// registered (with EAB when configured) on first use, see Register.
//
// lego logs through a package-wide logger; the first New points it at log,
// named "lego", its info lines at V(1).
func New(cfg Config, log logr.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	transport, err := cfg.transport()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, dirMode); err != nil {
		return nil, fmt.Errorf("acme: state dir: %w", err)
	}
	dir := accountDir(cfg.StateDir, cfg.Directory, cfg.Email)
	if err := ensureDir(dir); err != nil {
		return nil, fmt.Errorf("acme: account dir: %w", err)
	}
	if err := ensureDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("acme: account dir: %w", err)
	}
	key, created, err := loadOrCreateKey(filepath.Join(dir, "account.key"))
	if err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	var reg *acme.ExtendedAccount
	if !created {
		if reg, err = loadAccount(filepath.Join(dir, "account.json"), cfg.Directory, cfg.Email); err != nil {
			return nil, fmt.Errorf("acme: account: %w", err)
		}
	}
	legoLogOnce.Do(func() {
		legolog.SetDefault(slog.New(logr.ToSlogHandler(log.WithName("lego").V(1))))
	})
	log.V(1).Info("ACME account", "directory", cfg.Directory, "newKey", created, "registered", reg != nil)
	return &Client{cfg: cfg, log: log, transport: transport, key: key, dir: dir, reg: reg}, nil
}

// user is lego's view of the account.
type user struct {
	email string
	key   crypto.Signer
	reg   *acme.ExtendedAccount
}

func (u *user) GetEmail() string                       { return u.email }
func (u *user) GetRegistration() *acme.ExtendedAccount { return u.reg }
func (u *user) GetPrivateKey() crypto.Signer           { return u.key }

// lego makes a lego client for one operation. It fetches the directory
// (lego does so without a context; HTTPTimeout bounds it).
func (c *Client) lego(reg *acme.ExtendedAccount) (*lego.Client, error) {
	cfg := &lego.Config{
		CADirURL:   c.cfg.Directory,
		User:       &user{email: c.cfg.Email, key: c.key, reg: reg},
		UserAgent:  userAgent,
		HTTPClient: &http.Client{Transport: c.transport, Timeout: c.cfg.httpTimeout()},
		Certificate: lego.CertificateConfig{
			Timeout:             issuanceTimeout,
			OverallRequestLimit: certificate.DefaultOverallRequestLimit,
		},
	}
	lc, err := lego.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	return lc, nil
}

// Register registers the account at the CA unless a registration is
// already kept, agreeing to the CA's terms of service, with the external
// account binding when configured. Obtain calls it; it is exported for a
// caller that wants to fail early.
func (c *Client) Register(ctx context.Context) error {
	_, err := c.registration(ctx)
	return err
}

// registration returns the kept registration, registering first if none.
func (c *Client) registration(ctx context.Context) (*acme.ExtendedAccount, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reg != nil {
		return c.reg, nil
	}
	lc, err := c.lego(nil)
	if err != nil {
		return nil, err
	}
	var reg *acme.ExtendedAccount
	if e := c.cfg.EAB; e != nil {
		reg, err = lc.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{
			TermsOfServiceAgreed: true, Kid: e.KID, HmacEncoded: e.HMACKey,
		})
	} else {
		reg, err = lc.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
	}
	if err != nil {
		return nil, fmt.Errorf("acme: register: %w", err)
	}
	if reg == nil || reg.Location == "" {
		return nil, errors.New("acme: register: the CA returned no account URL")
	}
	if err := saveAccount(filepath.Join(c.dir, "account.json"), c.cfg.Directory, c.cfg.Email, reg); err != nil {
		return nil, fmt.Errorf("acme: save account: %w", err)
	}
	c.reg = reg
	c.log.Info("ACME account registered", "directory", c.cfg.Directory, "account", reg.Location)
	return reg, nil
}

// forget drops a registration the CA no longer knows, so that the next
// use registers anew.
func (c *Client) forget(reg *acme.ExtendedAccount) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reg != reg {
		return
	}
	c.reg = nil
	_ = os.Remove(filepath.Join(c.dir, "account.json"))
	c.log.Info("ACME account unknown to the CA; it will be registered again", "account", reg.Location)
}

// Account returns the account URL, or "" before registration.
func (c *Client) Account() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reg == nil {
		return ""
	}
	return c.reg.Location
}

// Obtain orders a certificate for hosts, answering the challenges with
// exactly one of http (HTTP-01) and dns (DNS-01), and saves it under
// StateDir/certificates/<name>.pem with its meta file. The first host is
// the order's first identifier; wildcards need DNS-01.
func (c *Client) Obtain(ctx context.Context, name string, hosts []string, http Responder, dns challenge.Provider) (*Certificate, error) {
	return c.obtain(ctx, name, hosts, http, dns, "")
}

// Renew obtains a new certificate for old's name and hosts. When the CA
// offers ARI and knows old, the order names old as the one it replaces
// (RFC 9773), so the CA's renewal limits treat it as a renewal.
func (c *Client) Renew(ctx context.Context, old *Certificate, http Responder, dns challenge.Provider) (*Certificate, error) {
	leaf, err := old.leaf()
	if err != nil {
		return nil, fmt.Errorf("acme: renew: %w", err)
	}
	replaces := ""
	if lc, err := c.lego(nil); err == nil {
		if _, err := lc.Certificate.GetRenewalInfo(ctx, leaf); err == nil {
			replaces, _ = api.MakeARICertID(leaf)
		}
	}
	crt, err := c.obtain(ctx, old.Name, old.Hosts, http, dns, replaces)
	if _, already := errors.AsType[*acme.AlreadyReplacedError](err); already && replaces != "" {
		c.log.Info("certificate already replaced at the CA; ordering without replaces", "name", old.Name, "serial", old.Serial)
		crt, err = c.obtain(ctx, old.Name, old.Hosts, http, dns, "")
	}
	return crt, err
}

// obtain is Obtain, with the ARI certificate ID of the one it replaces.
func (c *Client) obtain(ctx context.Context, name string, hosts []string, http Responder, dns challenge.Provider, replaces string) (*Certificate, error) {
	if err := checkObtain(name, hosts, http, dns); err != nil {
		return nil, fmt.Errorf("acme: obtain: %w", err)
	}
	reg, err := c.registration(ctx)
	if err != nil {
		return nil, err
	}
	lc, err := c.lego(reg)
	if err != nil {
		return nil, err
	}
	if http != nil {
		err = lc.Challenge.SetHTTP01Provider(&httpProvider{r: http, timeout: c.cfg.httpTimeout()})
	} else {
		var opts []dns01.ChallengeOption
		if o, ok := dns.(DNS01Options); ok {
			opts = o.DNS01Options()
		}
		err = lc.Challenge.SetDNS01Provider(dns, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("acme: obtain %s: %w", name, err)
	}
	res, err := lc.Certificate.Obtain(ctx, certificate.ObtainRequest{
		Domains:        hosts,
		KeyType:        c.cfg.keyType(),
		Bundle:         true,
		ReplacesCertID: replaces,
	})
	if err != nil {
		if p, ok := errors.AsType[*acme.ProblemDetails](err); ok && p.Type == acme.AccountDoesNotExistErrorType {
			c.forget(reg)
		}
		return nil, fmt.Errorf("acme: obtain %s: %w", name, err)
	}
	chain := res.Certificate
	if len(chain) > 0 && chain[len(chain)-1] != '\n' {
		chain = append(chain, '\n')
	}
	crt, _, err := parseCertificate(name, hosts, append(chain, res.PrivateKey...))
	if err != nil {
		return nil, fmt.Errorf("acme: obtain %s: %w", name, err)
	}
	if err := saveCertificate(c.cfg.StateDir, crt, res.CertURL, time.Now()); err != nil {
		return nil, fmt.Errorf("acme: save %s: %w", name, err)
	}
	c.log.Info("certificate obtained", "name", name, "hosts", hosts, "serial", crt.Serial,
		"notAfter", crt.NotAfter, "issuer", crt.Issuer, "replaces", replaces != "")
	return crt, nil
}

// checkObtain checks Obtain's arguments before any request.
func checkObtain(name string, hosts []string, http Responder, dns challenge.Provider) error {
	if err := validName(name); err != nil {
		return err
	}
	if (http == nil) == (dns == nil) {
		return errors.New("exactly one of an HTTP-01 responder and a DNS-01 provider is needed")
	}
	if len(hosts) == 0 {
		return fmt.Errorf("certificate %s: no hosts", name)
	}
	for _, h := range hosts {
		switch {
		case h == "" || strings.TrimSpace(h) != h:
			return fmt.Errorf("certificate %s: host %q is empty or padded", name, h)
		case http != nil && strings.HasPrefix(h, "*."):
			return fmt.Errorf("certificate %s: wildcard %q needs DNS-01", name, h)
		}
	}
	return nil
}

// Load reads back certificates/<name>.pem, checking that it parses and that
// its key matches the leaf; Hosts come from the meta file when it describes
// the same leaf. A missing certificate is an error that wraps fs.ErrNotExist.
func (c *Client) Load(name string) (*Certificate, error) {
	crt, err := loadCertificate(c.cfg.StateDir, name)
	if err != nil {
		return nil, fmt.Errorf("acme: load: %w", err)
	}
	return crt, nil
}

// RenewalInfo asks the CA for its suggested renewal window for crt (ARI,
// RFC 9773). It returns nil, nil when the CA offers no ARI (or answers an
// empty window). It needs no registration.
func (c *Client) RenewalInfo(ctx context.Context, crt *Certificate) (*RenewalWindow, error) {
	leaf, err := crt.leaf()
	if err != nil {
		return nil, fmt.Errorf("acme: renewal info: %w", err)
	}
	lc, err := c.lego(nil)
	if err != nil {
		return nil, err
	}
	info, err := lc.Certificate.GetRenewalInfo(ctx, leaf)
	if errors.Is(err, api.ErrNoARI) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("acme: renewal info %s: %w", crt.Name, err)
	}
	return &RenewalWindow{
		Start:          info.SuggestedWindow.Start,
		End:            info.SuggestedWindow.End,
		RetryAfter:     info.RetryAfter,
		ExplanationURL: info.ExplanationURL,
	}, nil
}

// Import keeps pemData (leaf, chain, then its key) as certificate name for
// hosts, as Obtain would have: a certificate recovered from where it is
// served (an LB instance), so that a controller taking over does not order
// it again. It checks that the key matches the leaf.
func (c *Client) Import(name string, hosts []string, pemData []byte) (*Certificate, error) {
	if err := validName(name); err != nil {
		return nil, fmt.Errorf("acme: import: %w", err)
	}
	crt, _, err := parseCertificate(name, hosts, pemData)
	if err != nil {
		return nil, fmt.Errorf("acme: import %s: %w", name, err)
	}
	if err := saveCertificate(c.cfg.StateDir, crt, "", time.Now()); err != nil {
		return nil, fmt.Errorf("acme: save %s: %w", name, err)
	}
	c.log.Info("certificate recovered", "name", name, "hosts", hosts, "serial", crt.Serial, "notAfter", crt.NotAfter)
	return crt, nil
}
