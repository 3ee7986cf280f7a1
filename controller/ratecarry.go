package controller

import (
	"context"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/specs"
)

// rateCarry keeps the rate limits' counts across a reload: the local peer
// passes them to the new worker late (3.0) or never (2.6); see
// haproxy.CarryRateTables.
type rateCarry struct {
	names  []string
	oldPID int
	tables map[string][]haproxy.RateEntry
}

// startRateCarry reads the tables before a reload of a running worker; nil
// when there is nothing to carry.
func startRateCarry(ctx context.Context, rt *haproxy.Runtime, lb *specs.LoadBalancer, obs *Observation, p *Plan) *rateCarry {
	names := haproxy.RateTables(&lb.Spec)
	if p.StartHAProxy || len(names) == 0 || len(obs.Proc.Workers) != 1 {
		return nil
	}
	return &rateCarry{names: names, oldPID: obs.Proc.Workers[0], tables: rt.ReadRateTables(ctx, names)}
}

// finish reads the old worker once more and raises the new worker's
// counts. A failure only costs clients their count: it is logged.
func (c *rateCarry) finish(ctx context.Context, rt *haproxy.Runtime, log logr.Logger) {
	if c == nil {
		return
	}
	tables := haproxy.MaxRates(c.tables, rt.ReadOldRateTables(ctx, c.oldPID, c.names))
	if n, err := rt.CarryRateTables(ctx, tables); err != nil {
		log.Info("could not carry the rate limits' tables to the new worker", "err", err.Error(), "set", n)
	} else if n > 0 {
		log.V(1).Info("carried the rate limits' tables to the new worker", "keys", n)
	}
}
