package controller

import (
	"encoding/json"
	"strconv"
	"time"
)

// Instance config keys where incuslb records what it applied and saw.
const (
	KeyLB         = "user.incuslb.lb"           // the LoadBalancer's name; marks the instance as incuslb's
	KeySource     = "user.incuslb.source"       // the spec file it came from
	KeySpecHash   = "user.incuslb.spec-hash"    // hash of the defaulted spec and certificate
	KeyGeneration = "user.incuslb.generation"   // bumped whenever the spec hash changes
	KeyConfigHash = "user.incuslb.config-hash"  // hash of the haproxy.cfg last applied
	KeyAppliedAt  = "user.incuslb.applied-at"   // RFC 3339 time of the last change applied
	KeyConditions = "user.incuslb.conditions"   // JSON list of Condition
	KeyRevision   = "user.incuslb.revision"     // git commit the spec was read at
	KeyVirtualIP  = "user.incuslb.virtual-ip"   // a replica's pair's virtual address (spec.highAvailability.virtualIP)
	KeyCerts      = "user.incuslb.certificates" // JSON list of CertStatus (the first maxCertStatuses)
	// KeyMaintenance ("true") is set by `incuslb maintenance on`: a pair's
	// replica hands the virtual address over, and the controller does not
	// start the instance while it is stopped.
	KeyMaintenance = "user.incuslb.maintenance"
)

// Condition types, as Kubernetes controllers report them.
const (
	ConditionReady       = "Ready"
	ConditionProgressing = "Progressing"
	ConditionDegraded    = "Degraded"
	// ConditionOrphaned is set on the instance of a LoadBalancer removed from
	// the specs; it keeps running until deleted (run --prune deletes it).
	ConditionOrphaned = "Orphaned"
)

// Condition is one observed aspect of a LoadBalancer.
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"` // "True" or "False"
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
	ObservedGeneration int64     `json:"observedGeneration"`
	LastTransitionTime time.Time `json:"lastTransitionTime"`
}

// Status is what incuslb recorded on an LB instance.
type Status struct {
	LB         string      `json:"lb"`
	Source     string      `json:"source,omitempty"`
	Revision   string      `json:"revision,omitempty"`
	SpecHash   string      `json:"specHash,omitempty"`
	Generation int64       `json:"generation"`
	ConfigHash string      `json:"configHash,omitempty"`
	AppliedAt  time.Time   `json:"appliedAt,omitzero"`
	Conditions []Condition `json:"conditions,omitempty"`
	// VirtualIP is set on the replicas of a pair: the address keepalived
	// moves between them.
	VirtualIP string `json:"virtualIP,omitempty"`
	// LeaderGeneration is the lease generation of the controller that
	// last applied the spec (0: written without leader election).
	LeaderGeneration int64 `json:"leaderGeneration,omitempty"`
	// Certificates are the certificates the LB serves, the default first.
	Certificates []CertStatus `json:"certificates,omitempty"`
}

// StatusFromConfig reads the recorded status from instance config.
func StatusFromConfig(cfg map[string]string) Status {
	s := Status{
		LB:         cfg[KeyLB],
		Source:     cfg[KeySource],
		Revision:   cfg[KeyRevision],
		SpecHash:   cfg[KeySpecHash],
		ConfigHash: cfg[KeyConfigHash],
		VirtualIP:  cfg[KeyVirtualIP],
	}
	s.Generation, _ = strconv.ParseInt(cfg[KeyGeneration], 10, 64)
	s.LeaderGeneration, _ = strconv.ParseInt(cfg[KeyLeaderGeneration], 10, 64)
	s.AppliedAt, _ = time.Parse(time.RFC3339, cfg[KeyAppliedAt])
	_ = json.Unmarshal([]byte(cfg[KeyConditions]), &s.Conditions)
	_ = json.Unmarshal([]byte(cfg[KeyCerts]), &s.Certificates)
	return s
}

// Clone returns a copy that shares nothing with s.
func (s Status) Clone() Status {
	s.Conditions = append([]Condition(nil), s.Conditions...)
	s.Certificates = append([]CertStatus(nil), s.Certificates...)
	return s
}

// Keys is the status as instance config keys.
func (s Status) Keys() map[string]string {
	conds, _ := json.Marshal(s.Conditions)
	keys := map[string]string{
		KeyLB:         s.LB,
		KeySource:     s.Source,
		KeyRevision:   s.Revision,
		KeySpecHash:   s.SpecHash,
		KeyGeneration: strconv.FormatInt(s.Generation, 10),
		KeyConfigHash: s.ConfigHash,
		KeyVirtualIP:  s.VirtualIP,
		KeyConditions: string(conds),
		KeyAppliedAt:  "",
	}
	keys[KeyCerts] = ""
	if len(s.Certificates) > 0 {
		certs, _ := json.Marshal(s.Certificates[:min(len(s.Certificates), maxCertStatuses)])
		keys[KeyCerts] = string(certs)
	}
	if s.LeaderGeneration > 0 {
		keys[KeyLeaderGeneration] = strconv.FormatInt(s.LeaderGeneration, 10)
	}
	if !s.AppliedAt.IsZero() {
		keys[KeyAppliedAt] = s.AppliedAt.UTC().Format(time.RFC3339)
	}
	return keys
}

// Condition returns the condition of type t, or nil.
func (s *Status) Condition(t string) *Condition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == t {
			return &s.Conditions[i]
		}
	}
	return nil
}

// SetCondition sets a condition, keeping its transition time when its
// status does not change.
func (s *Status) SetCondition(c Condition, now time.Time) {
	c.LastTransitionTime = now.UTC().Truncate(time.Second)
	if old := s.Condition(c.Type); old != nil {
		if old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
		*old = c
		return
	}
	s.Conditions = append(s.Conditions, c)
}
