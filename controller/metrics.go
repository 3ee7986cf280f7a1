package controller

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are incuslb's Prometheus metrics. A nil *Metrics counts nothing.
type Metrics struct {
	reconciles     *prometheus.CounterVec
	reconcileTime  *prometheus.HistogramVec
	reloads        *prometheus.CounterVec
	runtimeUpdates *prometheus.CounterVec
	members        *prometheus.GaugeVec
	eventToApplied *prometheus.HistogramVec
	oldWorkers     *prometheus.GaugeVec
	oldSessions    *prometheus.GaugeVec
	leader         *prometheus.GaugeVec
	certNotAfter   *prometheus.GaugeVec
	acmeFailures   *prometheus.CounterVec
	acmeIssued     *prometheus.CounterVec

	mu          sync.Mutex
	lastSuccess map[string]time.Time // by LB
	lastFetch   func() time.Time     // the git source's last successful fetch
}

var (
	lastSuccessDesc = prometheus.NewDesc("incuslb_last_success_age_seconds",
		"Seconds since the last successful pass of each LoadBalancer.", []string{"lb"}, nil)
	lastFetchDesc = prometheus.NewDesc("incuslb_git_last_fetch_age_seconds",
		"Seconds since the last successful fetch of the git source.", nil, nil)
)

// Describe implements prometheus.Collector for the ages.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- lastSuccessDesc
	ch <- lastFetchDesc
}

// Collect implements prometheus.Collector: the ages, computed at scrape.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for lb, t := range m.lastSuccess {
		ch <- prometheus.MustNewConstMetric(lastSuccessDesc, prometheus.GaugeValue, now.Sub(t).Seconds(), lb)
	}
	if m.lastFetch != nil {
		if t := m.lastFetch(); !t.IsZero() {
			ch <- prometheus.MustNewConstMetric(lastFetchDesc, prometheus.GaugeValue, now.Sub(t).Seconds())
		}
	}
}

// SetGitLastFetch makes the metrics report the age of the git source's last
// successful fetch.
func (m *Metrics) SetGitLastFetch(f func() time.Time) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastFetch = f
}

func (m *Metrics) succeeded(lb string, at time.Time) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastSuccess[lb] = at
}

// NewMetrics registers incuslb's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "incuslb_reconciles_total", Help: "Reconcile passes, by LoadBalancer and result (ok, error, terminal).",
		}, []string{"lb", "result"}),
		reconcileTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "incuslb_reconcile_duration_seconds", Help: "Time one reconcile pass took.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"lb"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "incuslb_reloads_total", Help: "HAProxy reloads, by LoadBalancer and reason.",
		}, []string{"lb", "reason"}),
		runtimeUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "incuslb_runtime_updates_total", Help: "Changes made through HAProxy's runtime API without a reload, by kind (join, drain, park, ready, certificate).",
		}, []string{"lb", "kind"}),
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "incuslb_members", Help: "Servers of each pool by live HAProxy state (UP, DOWN, DRAIN, MAINT).",
		}, []string{"lb", "pool", "state"}),
		eventToApplied: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "incuslb_event_to_applied_seconds", Help: "From an Incus event to the end of the pass that applied its effect.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"lb"}),
	}
	m.oldWorkers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "incuslb_old_workers", Help: "HAProxy workers left from earlier reloads, still serving sessions opened before them.",
	}, []string{"lb"})
	m.oldSessions = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "incuslb_old_worker_sessions", Help: "Sessions (WebSockets, long requests) held by old workers.",
	}, []string{"lb"})
	m.lastSuccess = map[string]time.Time{}
	m.leader = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "incuslb_lease_holder",
		Help: "The holder of the leader lease as this controller last read it (value: the lease generation); is_me is true on the leader.",
	}, []string{"holder", "is_me"})
	m.certNotAfter = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "incuslb_certificate_not_after_seconds",
		Help: "When each certificate an LB serves expires (Unix time), by LoadBalancer and certificate name.",
	}, []string{"lb", "name"})
	m.acmeFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "incuslb_acme_failures_total",
		Help: "Failed ACME orders (obtain or renew), by LoadBalancer and reason (rateLimited, connection, unauthorized, ...).",
	}, []string{"lb", "reason"})
	m.acmeIssued = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "incuslb_acme_certificates_issued_total",
		Help: "Certificates the ACME CA issued, by LoadBalancer and kind (obtain, renew).",
	}, []string{"lb", "kind"})
	reg.MustRegister(m.reconciles, m.reconcileTime, m.reloads, m.runtimeUpdates, m.members, m.eventToApplied,
		m.oldWorkers, m.oldSessions, m.leader, m.certNotAfter, m.acmeFailures, m.acmeIssued, m)
	return m
}

func (m *Metrics) reload(lb, reason string) {
	if m != nil {
		m.reloads.WithLabelValues(lb, reason).Inc()
	}
}

func (m *Metrics) runtimeUpdate(lb, kind string) {
	if m != nil {
		m.runtimeUpdates.WithLabelValues(lb, kind).Inc()
	}
}

func (m *Metrics) reconciled(lb, result string, took time.Duration) {
	if m != nil {
		m.reconciles.WithLabelValues(lb, result).Inc()
		m.reconcileTime.WithLabelValues(lb).Observe(took.Seconds())
	}
}

func (m *Metrics) applied(lb string, sinceEvent time.Duration) {
	if m != nil {
		m.eventToApplied.WithLabelValues(lb).Observe(sinceEvent.Seconds())
	}
}

func (m *Metrics) setMembers(lb string, counts map[[2]string]int) {
	if m == nil {
		return
	}
	m.members.DeletePartialMatch(prometheus.Labels{"lb": lb})
	for k, n := range counts {
		m.members.WithLabelValues(lb, k[0], k[1]).Set(float64(n))
	}
}

func (m *Metrics) setOldWorkers(lb string, sessions map[int]int) {
	if m == nil {
		return
	}
	total := 0
	for _, n := range sessions {
		total += n
	}
	m.oldWorkers.WithLabelValues(lb).Set(float64(len(sessions)))
	m.oldSessions.WithLabelValues(lb).Set(float64(total))
}

// SetLeaseHolder exports the lease's holder as last read.
func (m *Metrics) SetLeaseHolder(holder string, generation int64, me bool) {
	if m == nil {
		return
	}
	m.leader.Reset()
	m.leader.WithLabelValues(holder, strconv.FormatBool(me)).Set(float64(generation))
}

func (m *Metrics) setCertificates(lb string, certs []CertStatus) {
	if m == nil {
		return
	}
	m.certNotAfter.DeletePartialMatch(prometheus.Labels{"lb": lb})
	for _, c := range certs {
		if !c.NotAfter.IsZero() {
			m.certNotAfter.WithLabelValues(lb, c.Name).Set(float64(c.NotAfter.Unix()))
		}
	}
}

func (m *Metrics) acmeFailed(lb, reason string) {
	if m != nil {
		m.acmeFailures.WithLabelValues(lb, reason).Inc()
	}
}

func (m *Metrics) acmeIssuedOne(lb, kind string) {
	if m != nil {
		m.acmeIssued.WithLabelValues(lb, kind).Inc()
	}
}
