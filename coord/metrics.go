package coord

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metrics are the CS counters. Metrics is a prometheus.Collector; safe for
// concurrent use.
type Metrics struct {
	responses *prometheus.CounterVec // endpoint, code
	refusals  *prometheus.CounterVec // reason (auth.go's Reason*)

	mu       sync.Mutex
	byReason map[string]prometheus.Counter // the refusals children, by reason

	GroupsCreated   prometheus.Counter
	RequestsQueued  prometheus.Counter
	CommitsAccepted prometheus.Counter
	CommitConflicts prometheus.Counter
	Forwarded       prometheus.Counter
	ForwardErrors   prometheus.Counter
	// Heartbeats counts member heartbeats recorded (lifecycle.go).
	Heartbeats prometheus.Counter
	retiredVec *prometheus.CounterVec // reason: last_member, silent
}

// NewMetrics returns zeroed counters, registered with reg unless reg is
// nil. It panics if reg already holds metrics of the same names.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &Metrics{
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sframe_cs_http_responses_total",
			Help: "HTTP responses by endpoint and status code."}, []string{"endpoint", "code"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sframe_cs_refused_total",
			Help: "Requests refused by authentication, authorization or limits, by reason."}, []string{"reason"}),
		byReason:        map[string]prometheus.Counter{},
		GroupsCreated:   counter("sframe_cs_groups_created_total", "Groups created by a first join request (201)."),
		RequestsQueued:  counter("sframe_cs_requests_queued_total", "Join/leave requests accepted for the RequestTrack."),
		CommitsAccepted: counter("sframe_cs_commits_accepted_total", "Commits accepted (epoch incremented)."),
		CommitConflicts: counter("sframe_cs_commit_conflicts_total", "Commits rejected with 409 (stale epoch)."),
		Forwarded:       counter("sframe_cs_forwarded_total", "Objects handed to the Forwarder."),
		ForwardErrors:   counter("sframe_cs_forward_errors_total", "Forwarder failures (items stay queued)."),
		Heartbeats:      counter("sframe_cs_heartbeats_total", "Member heartbeats recorded."),
		retiredVec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sframe_cs_groups_retired_total",
			Help: "Groups retired (state and archive removed; the next join creates them afresh), by reason: last_member (its last member left), silent (no member heard for the liveness timeout)."}, []string{"reason"}),
	}
	for _, r := range retireReasons {
		m.retiredVec.WithLabelValues(r)
	}
	// Every known reason from the start, so that a rate() over it is
	// defined before the first refusal.
	for _, r := range refusalReasons {
		m.refusal(r)
	}
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

func (m *Metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.responses, m.refusals, m.GroupsCreated, m.RequestsQueued,
		m.CommitsAccepted, m.CommitConflicts, m.Forwarded, m.ForwardErrors, m.Heartbeats, m.retiredVec}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.all() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.all() {
		c.Collect(ch)
	}
}

// refusal returns the counter of reason, creating it.
func (m *Metrics) refusal(reason string) prometheus.Counter {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.byReason[reason]
	if !ok {
		c = m.refusals.WithLabelValues(reason)
		m.byReason[reason] = c
	}
	return c
}

// Refused returns how many requests were refused for reason (a Reason*
// constant).
func (m *Metrics) Refused(reason string) uint64 {
	m.mu.Lock()
	c := m.byReason[reason]
	m.mu.Unlock()
	if c == nil {
		return 0
	}
	var d dto.Metric
	if c.Write(&d) != nil {
		return 0
	}
	return uint64(d.GetCounter().GetValue())
}

func (m *Metrics) refused(reason string) { m.refusal(reason).Inc() }

func (m *Metrics) response(endpoint string, code int) {
	m.responses.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
}

// retireReasons are the reason labels of sframe_cs_groups_retired_total.
var retireReasons = []string{"last_member", "silent"}

func (m *Metrics) retired(reason string) { m.retiredVec.WithLabelValues(reason).Inc() }

// Retired returns how many groups were retired for reason ("last_member"
// or "silent").
func (m *Metrics) Retired(reason string) uint64 {
	var d dto.Metric
	if m.retiredVec.WithLabelValues(reason).Write(&d) != nil {
		return 0
	}
	return uint64(d.GetCounter().GetValue())
}
