package specs

import (
	"maps"
)

// Canary sends a share of a selector pool's new sessions to the instances
// another selector picks. They fill slots of the pool's own backend, so a
// client's stickiness cookie keeps its server whatever the split; the split
// is made with the servers' weights at run time, and changing it needs no
// reload.
type Canary struct {
	// Selector picks the canary instances, in the pool's project: running
	// instances whose config has every key with the given value. An
	// instance that both selectors pick is a canary.
	Selector map[string]string `json:"selector"`
	// Percent of the pool's new sessions that go to the canary instances
	// (0 to 100), split between them by their weight labels; the rest go
	// to the pool's other members. With no canary instance running, the
	// other members take everything, and the other way round. Left out, it
	// is 0: the canary instances are picked but take no new session until
	// it is raised.
	Percent int `json:"percent,omitempty"`
}

// WeightKey is the instance config key that sets a member's weight in its
// pool, 0 to MaxWeight: 0 takes no new session (a sticky client keeps
// it), an unlabelled member weighs DefaultWeight.
const (
	WeightKey     = "user.incuslb.weight"
	MaxWeight     = 256
	DefaultWeight = 100
)

// validateCanary checks a pool's canary: a selector pool only, with a
// selector of its own.
func validateCanary(e *errs, path string, p *Pool) {
	c := p.Canary
	if c == nil {
		return
	}
	path += ".canary"
	if len(p.Selector) == 0 {
		e.add(path, "needs a selector pool (static servers carry no labels)")
	}
	if c.Percent < 0 || c.Percent > 100 {
		e.add(path+".percent", "must be between 0 and 100, not %d", c.Percent)
	}
	switch {
	case len(c.Selector) == 0:
		e.add(path+".selector", "is required: it picks the canary instances")
	case len(c.Selector) > maxSelectorKeys:
		e.add(path+".selector", "at most %d keys, not %d", maxSelectorKeys, len(c.Selector))
	case maps.Equal(c.Selector, p.Selector):
		e.add(path+".selector", "must differ from the pool's selector (it would pick the same instances)")
	}
	validateSelector(e, path+".selector", c.Selector)
}
