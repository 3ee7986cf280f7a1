package acme

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"time"

	"github.com/go-acme/lego/v5/certcrypto"
)

// DefaultHTTPTimeout bounds one request to the ACME server, and one call
// of a Responder, when Config.HTTPTimeout is zero.
const DefaultHTTPTimeout = 30 * time.Second

// Config says which CA to use, as whom, and where to keep the state.
type Config struct {
	// Directory is the ACME directory URL (https only, as RFC 8555 requires),
	// e.g. https://acme-v02.api.letsencrypt.org/directory.
	Directory string
	// Email is the account's contact; optional (Let's Encrypt no longer
	// needs one). A bare address, no display name.
	Email string
	// CABundle holds PEM roots to trust for the ACME server's own TLS; nil
	// means the system roots.
	CABundle []byte
	// EAB is the external account binding some CAs ask for; nil for none.
	EAB *EAB
	// KeyType is the certificates' key type: "ec256" (the default when
	// empty), "ec384", "rsa2048" or "rsa4096". The account key is always
	// ec256.
	KeyType string
	// StateDir holds the accounts and certificates (see the package doc).
	StateDir string
	// HTTPTimeout bounds one request to the ACME server and one call of a
	// Responder; zero means DefaultHTTPTimeout.
	HTTPTimeout time.Duration
}

// EAB is an external account binding: the key ID and the HMAC key (base64url,
// as CAs hand it out) that tie a new ACME account to an account at the CA.
type EAB struct {
	KID     string
	HMACKey string
}

// keyTypes maps Config.KeyType to lego's key types.
var keyTypes = map[string]certcrypto.KeyType{
	"ec256":   certcrypto.EC256,
	"ec384":   certcrypto.EC384,
	"rsa2048": certcrypto.RSA2048,
	"rsa4096": certcrypto.RSA4096,
}

// Validate checks every field and returns all problems joined, each naming
// its field. It never quotes the EAB HMAC key.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("acme config: %s: %s", field, fmt.Sprintf(format, args...)))
	}

	if c.Directory == "" {
		bad("Directory", "is empty")
	} else if u, err := url.Parse(c.Directory); err != nil {
		bad("Directory", "%q is not a URL", c.Directory)
	} else if u.Scheme != "https" || u.Host == "" {
		bad("Directory", "%q is not an https:// URL", c.Directory)
	}

	if c.Email != "" {
		if a, err := mail.ParseAddress(c.Email); err != nil || a.Address != c.Email {
			bad("Email", "%q is not a bare e-mail address", c.Email)
		}
	}

	if c.CABundle != nil && !x509.NewCertPool().AppendCertsFromPEM(c.CABundle) {
		bad("CABundle", "holds no PEM certificate")
	}

	if c.EAB != nil {
		if c.EAB.KID == "" {
			bad("EAB.KID", "is empty")
		}
		if c.EAB.HMACKey == "" {
			bad("EAB.HMACKey", "is empty")
		} else if !isBase64URL(c.EAB.HMACKey) {
			bad("EAB.HMACKey", "is not base64url")
		}
	}

	if c.KeyType != "" {
		if _, ok := keyTypes[c.KeyType]; !ok {
			bad("KeyType", "%q is not one of ec256, ec384, rsa2048, rsa4096", c.KeyType)
		}
	}

	if c.StateDir == "" {
		bad("StateDir", "is empty")
	}

	if c.HTTPTimeout < 0 {
		bad("HTTPTimeout", "%v is negative", c.HTTPTimeout)
	}

	return errors.Join(errs...)
}

// isBase64URL reports whether s decodes as base64url, padded or not, the
// two forms lego accepts.
func isBase64URL(s string) bool {
	if _, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return true
	}
	_, err := base64.URLEncoding.DecodeString(s)
	return err == nil
}

// keyType returns lego's key type for the certificates (ec256 by default).
func (c Config) keyType() certcrypto.KeyType {
	if kt, ok := keyTypes[c.KeyType]; ok {
		return kt
	}
	return certcrypto.EC256
}

// httpTimeout returns HTTPTimeout or its default.
func (c Config) httpTimeout() time.Duration {
	if c.HTTPTimeout > 0 {
		return c.HTTPTimeout
	}
	return DefaultHTTPTimeout
}

// transport builds the transport to the ACME server: the standard one,
// trusting CABundle alone when given. lego's environment variables
// (LEGO_CA_CERTIFICATES and others) are not read.
func (c Config) transport() (*http.Transport, error) {
	timeout := c.httpTimeout()
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CABundle != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c.CABundle) {
			return nil, errors.New("acme config: CABundle: holds no PEM certificate")
		}
		tlsConfig.RootCAs = pool
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
		ForceAttemptHTTP2:     true,
	}, nil
}
