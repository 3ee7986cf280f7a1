package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/incuslb/incuslb/acme"
	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/specs"
)

// lbResponder answers ACME HTTP-01 challenges through the LoadBalancer
// itself: the token goes into the HAProxy map that haproxy.cfg answers
// /.well-known/acme-challenge/ from, on every replica (the CA may reach
// any of them through the floating address), through the runtime API.
type lbResponder struct {
	a  *Applier
	lb *specs.LoadBalancer
}

var _ acme.Responder = (*lbResponder)(nil)

// Present puts the token on every replica that answers; it fails only
// when none does.
func (r *lbResponder) Present(ctx context.Context, token, keyAuth string) error {
	return r.each(ctx, func(rt *haproxy.Runtime, mapPath string) error {
		return rt.AddACMEToken(ctx, mapPath, token, keyAuth)
	})
}

// CleanUp takes the token out of every replica that answers.
func (r *lbResponder) CleanUp(ctx context.Context, token string) error {
	return r.each(ctx, func(rt *haproxy.Runtime, mapPath string) error {
		return rt.DelACMEToken(ctx, mapPath, token)
	})
}

func (r *lbResponder) each(ctx context.Context, do func(*haproxy.Runtime, string) error) error {
	var errs []error
	ok := 0
	for _, rep := range Replicas(r.lb) {
		if r.a.replicaLost(rep) {
			continue
		}
		rt, _ := r.a.runtimeFor(ctx, rep)
		if err := do(rt, haproxy.ACMEMapPath(rep, haproxy.Options{})); err != nil {
			errs = append(errs, fmt.Errorf("instance %s: %w", rep.Spec.Instance.Name, err))
			continue
		}
		ok++
	}
	if ok == 0 {
		if len(errs) == 0 {
			return errors.New("no replica of the load balancer answers")
		}
		return fmt.Errorf("HTTP-01 token not served: %w", errors.Join(errs...))
	}
	if len(errs) > 0 {
		r.a.Log.Info("HTTP-01 token not on every replica", "lb", r.lb.Metadata.Name, "error", errors.Join(errs...).Error())
	}
	return nil
}

// servedCerts reads the certificates the LB instance serves (its
// crt-list's files), for a controller that takes over; unreadable ones are
// skipped.
func (a *Applier) servedCerts(ctx context.Context, lb *specs.LoadBalancer) [][]byte {
	list, err := a.readOptional(ctx, lb, haproxy.CrtListPath(lb, haproxy.Options{}))
	if err != nil || list == nil {
		return nil
	}
	var out [][]byte
	for _, path := range haproxy.ParseCrtList(string(list)) {
		if !strings.HasPrefix(path, haproxy.CertDir+"/") || strings.Contains(path, "..") {
			continue // the container's word: only its certificate directory is read
		}
		if data, err := a.readOptional(ctx, lb, path); err == nil && data != nil {
			out = append(out, data)
		}
	}
	return out
}
