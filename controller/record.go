package controller

import (
	"context"
	"strings"
	"time"

	"github.com/incuslb/incuslb/specs"
)

// record makes the pass's one status write: what was applied, and the
// conditions, on an instance this LB owns. err is the pass's failure, if
// any. Nothing is written when nothing changed, and the owner key is never
// written here (only creation and adoption set it).
func (a *Applier) record(ctx context.Context, lb *specs.LoadBalancer, obs *Observation, specHash string, p *Plan, passErr error) error {
	if !obs.Exists() || obs.Owner != lb.Metadata.Name {
		return nil
	}
	old := StatusFromConfig(obs.Instance.Config)
	st := old.Clone()
	now := a.now()
	if passErr != nil {
		msg := passErr.Error()
		if lb.Revision != "" {
			msg = "commit " + shortSHA(lb.Revision) + ": " + msg
		}
		reason := failureReason(passErr)
		st.SetCondition(Condition{Type: ConditionDegraded, Status: "True", Reason: reason,
			Message: truncate(msg, 1000), ObservedGeneration: st.Generation}, now)
		st.SetCondition(Condition{Type: ConditionReady, Status: "False", Reason: reason,
			Message: "HAProxy does not run the desired config", ObservedGeneration: st.Generation}, now)
		return a.writeStatus(ctx, lb, old, st)
	}
	st.Source, st.Revision, st.ConfigHash = lb.Source, lb.Revision, p.hash
	if p.generation > 0 {
		st.LeaderGeneration = p.generation
	}
	st.VirtualIP = ""
	if ha := lb.Spec.HighAvailability; ha != nil {
		st.VirtualIP = ha.VirtualIP
	}
	if st.SpecHash != specHash {
		st.SpecHash = specHash
		st.Generation++
	}
	if p.Changed() || st.AppliedAt.IsZero() {
		st.AppliedAt = now.UTC().Truncate(time.Second)
	}
	st.SetCondition(Condition{Type: ConditionReady, Status: "True", Reason: "Applied",
		Message: "HAProxy runs the desired config", ObservedGeneration: st.Generation}, now)
	degraded := Condition{Type: ConditionDegraded, Status: "False", Reason: "Applied", ObservedGeneration: st.Generation}
	if len(p.LabelProblems) > 0 {
		// The pools serve, each such member at the default weight.
		degraded.Status, degraded.Reason = "True", "InvalidMemberLabel"
		degraded.Message = truncate(strings.Join(p.LabelProblems, "; "), 1000)
	}
	st.SetCondition(degraded, now)
	progressing := Condition{Type: ConditionProgressing, Status: "False", Reason: "Converged", ObservedGeneration: st.Generation}
	switch {
	case p.drainsLeft:
		progressing.Status, progressing.Reason, progressing.Message = "True", "Draining", "a leaving member is draining"
	case p.waiting:
		progressing.Status, progressing.Reason, progressing.Message = "True", "WaitingForAddress", "a selected instance runs but has no address yet"
	}
	st.SetCondition(progressing, now)
	st.Certificates = p.certStatus
	if len(p.certStatus) > 0 || st.Condition(ConditionCertificateExpiring) != nil {
		st.SetCondition(expiringCondition(p.certStatus, now, st.Generation), now)
	}
	if c := st.Condition(ConditionOrphaned); c != nil && c.Status == "True" {
		st.SetCondition(Condition{Type: ConditionOrphaned, Status: "False", Reason: "InSpecs", ObservedGeneration: st.Generation}, now)
	}
	return a.writeStatus(ctx, lb, old, st)
}

// passError is a failed pass with the reason its conditions carry.
type passError struct {
	reason string
	err    error
}

func (e *passError) Error() string { return e.err.Error() }
func (e *passError) Unwrap() error { return e.err }

// failed tags err with the reason its conditions carry.
func failed(reason string, err error) error {
	if err == nil {
		return nil
	}
	return &passError{reason: reason, err: err}
}

func failureReason(err error) string {
	if pe, ok := err.(*passError); ok {
		return pe.reason
	}
	return "Failed"
}

// writeStatus writes the keys of st that differ from old; never the owner
// key.
func (a *Applier) writeStatus(ctx context.Context, lb *specs.LoadBalancer, old, st Status) error {
	oldKeys, newKeys := old.Keys(), st.Keys()
	diff := map[string]string{}
	for k, v := range newKeys {
		if oldKeys[k] != v && k != KeyLB {
			diff[k] = v
		}
	}
	if len(diff) == 0 {
		return nil
	}
	in := lb.Spec.Instance
	return a.Incus.UpdateConfig(ctx, in.Project, in.Name, diff)
}

func shortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ReportInvalid records an invalid spec as Degraded on the LB's instance,
// when the instance exists and is this LB's. The config that runs is left
// alone.
func (a *Applier) ReportInvalid(ctx context.Context, lb *specs.LoadBalancer, invalid error) error {
	obs := &Observation{}
	if err := a.observeInstance(ctx, lb, obs); err != nil {
		return err
	}
	return a.record(ctx, lb, obs, "", &Plan{}, failed("InvalidSpec", invalid))
}
