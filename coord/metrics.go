package coord

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
)

// Metrics are the CS counters, written in the Prometheus text exposition
// format by WritePrometheus. Safe for concurrent use.
type Metrics struct {
	mu        sync.Mutex
	responses map[[2]string]*atomic.Uint64 // {endpoint, code}
	refusals  map[string]*atomic.Uint64    // reason (auth.go's Reason*)

	GroupsCreated   atomic.Uint64
	RequestsQueued  atomic.Uint64
	CommitsAccepted atomic.Uint64
	CommitConflicts atomic.Uint64
	Forwarded       atomic.Uint64
	ForwardErrors   atomic.Uint64
}

// NewMetrics returns zeroed counters.
func NewMetrics() *Metrics {
	m := &Metrics{responses: map[[2]string]*atomic.Uint64{}, refusals: map[string]*atomic.Uint64{}}
	// Every known reason from the start, so that a rate() over it is
	// defined before the first refusal.
	for _, r := range refusalReasons {
		m.refusals[r] = new(atomic.Uint64)
	}
	return m
}

// Refused returns how many requests were refused for reason (a Reason*
// constant).
func (m *Metrics) Refused(reason string) uint64 {
	m.mu.Lock()
	c := m.refusals[reason]
	m.mu.Unlock()
	if c == nil {
		return 0
	}
	return c.Load()
}

func (m *Metrics) refused(reason string) {
	m.mu.Lock()
	c, ok := m.refusals[reason]
	if !ok {
		c = new(atomic.Uint64)
		m.refusals[reason] = c
	}
	m.mu.Unlock()
	c.Add(1)
}

func (m *Metrics) response(endpoint string, code int) {
	k := [2]string{endpoint, fmt.Sprint(code)}
	m.mu.Lock()
	c, ok := m.responses[k]
	if !ok {
		c = new(atomic.Uint64)
		m.responses[k] = c
	}
	m.mu.Unlock()
	c.Add(1)
}

// WritePrometheus writes all counters in the Prometheus text format (0.0.4).
func (m *Metrics) WritePrometheus(w io.Writer) error {
	m.mu.Lock()
	keys := make([][2]string, 0, len(m.responses))
	for k := range m.responses {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	vals := make([]uint64, len(keys))
	for i, k := range keys {
		vals[i] = m.responses[k].Load()
	}
	reasons := make([]string, 0, len(m.refusals))
	for r := range m.refusals {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	refused := make([]uint64, len(reasons))
	for i, r := range reasons {
		refused[i] = m.refusals[r].Load()
	}
	m.mu.Unlock()

	var err error
	p := func(format string, args ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, format, args...)
		}
	}
	p("# HELP sframe_cs_http_responses_total HTTP responses by endpoint and status code.\n")
	p("# TYPE sframe_cs_http_responses_total counter\n")
	for i, k := range keys {
		p("sframe_cs_http_responses_total{endpoint=%q,code=%q} %d\n", k[0], k[1], vals[i])
	}
	p("# HELP sframe_cs_refused_total Requests refused by authentication, authorization or limits, by reason.\n")
	p("# TYPE sframe_cs_refused_total counter\n")
	for i, r := range reasons {
		p("sframe_cs_refused_total{reason=%q} %d\n", r, refused[i])
	}
	counter := func(name, help string, v uint64) {
		p("# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	counter("sframe_cs_groups_created_total", "Groups created by a first join request (201).", m.GroupsCreated.Load())
	counter("sframe_cs_requests_queued_total", "Join/leave requests accepted for the RequestTrack.", m.RequestsQueued.Load())
	counter("sframe_cs_commits_accepted_total", "Commits accepted (epoch incremented).", m.CommitsAccepted.Load())
	counter("sframe_cs_commit_conflicts_total", "Commits rejected with 409 (stale epoch).", m.CommitConflicts.Load())
	counter("sframe_cs_forwarded_total", "Objects handed to the Forwarder.", m.Forwarded.Load())
	counter("sframe_cs_forward_errors_total", "Forwarder failures (items stay queued).", m.ForwardErrors.Load())
	return err
}
