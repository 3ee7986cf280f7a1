package acme

import (
	"context"
	"time"

	"github.com/go-acme/lego/v5/challenge"
)

// Responder answers HTTP-01 challenges: while a token is presented, a GET
// of /.well-known/acme-challenge/<token> on any of the hosts must answer
// keyAuth as the body. incuslb's controller implements it with an HAProxy
// map filled through the runtime API.
//
// Each call gets a context with a deadline (Config.HTTPTimeout). CleanUp is
// called after every successful Present, also when the order failed or its
// context ended. Implementations must be safe for concurrent use.
type Responder interface {
	Present(ctx context.Context, token, keyAuth string) error
	CleanUp(ctx context.Context, token string) error
}

// httpProvider adapts a Responder to lego's challenge.Provider for HTTP-01.
type httpProvider struct {
	r       Responder
	timeout time.Duration
}

var _ challenge.Provider = (*httpProvider)(nil)

// Present puts the token in place, within the timeout.
func (p *httpProvider) Present(ctx context.Context, _, token, keyAuth string) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	return p.r.Present(ctx, token, keyAuth)
}

// CleanUp removes the token, within the timeout, even when the order's
// context has ended: a token left behind would be served for nothing.
func (p *httpProvider) CleanUp(ctx context.Context, _, token, _ string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	defer cancel()
	return p.r.CleanUp(ctx, token)
}
