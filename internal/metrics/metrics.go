// Package metrics is a small, dependency-free registry of counters, gauges
// and histograms that writes the Prometheus text exposition format (0.0.4).
// Values are atomics, so hot paths record without locks or allocations.
package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry holds named metrics. The zero value is ready to use.
type Registry struct {
	mu      sync.Mutex
	metrics map[string]metric
}

type metric interface {
	write(w io.Writer, name string)
	help() string
	kind() string
}

func (r *Registry) register(name string, m metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.metrics == nil {
		r.metrics = map[string]metric{}
	}
	if _, dup := r.metrics[name]; dup {
		panic("metrics: duplicate metric " + name)
	}
	r.metrics[name] = m
}

// Counter is a monotonically increasing count.
type Counter struct {
	v    atomic.Uint64
	desc string
}

// Add increases the counter by n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Inc increases the counter by one.
func (c *Counter) Inc() { c.v.Add(1) }

// Value returns the count.
func (c *Counter) Value() uint64 { return c.v.Load() }

func (c *Counter) write(w io.Writer, name string) { fmt.Fprintf(w, "%s %d\n", name, c.v.Load()) }
func (c *Counter) help() string                   { return c.desc }
func (c *Counter) kind() string                   { return "counter" }

// Counter registers and returns a counter.
func (r *Registry) Counter(name, help string) *Counter {
	c := &Counter{desc: help}
	r.register(name, c)
	return c
}

// Func is a metric read from a function at scrape time, for values that are
// already counted elsewhere (library statistics).
type funcMetric struct {
	f     func() float64
	desc  string
	mtype string
}

func (f *funcMetric) write(w io.Writer, name string) {
	fmt.Fprintf(w, "%s %s\n", name, formatFloat(f.f()))
}
func (f *funcMetric) help() string { return f.desc }
func (f *funcMetric) kind() string { return f.mtype }

// CounterFunc registers a counter whose value f returns at scrape time.
func (r *Registry) CounterFunc(name, help string, f func() float64) {
	r.register(name, &funcMetric{f, help, "counter"})
}

// GaugeFunc registers a gauge whose value f returns at scrape time.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.register(name, &funcMetric{f, help, "gauge"})
}

// Histogram counts observations into cumulative buckets.
type Histogram struct {
	bounds []float64 // upper bounds, ascending; +Inf implied
	counts []atomic.Uint64
	sum    atomic.Uint64 // float64 bits
	count  atomic.Uint64
	desc   string
}

// Observe records v.
func (h *Histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v)
	h.counts[i].Add(1)
	h.count.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// Quantile estimates the q-quantile (0..1) from the buckets: the upper bound
// of the bucket holding it, or +Inf past the last bound.
func (h *Histogram) Quantile(q float64) float64 {
	total := h.count.Load()
	if total == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if cum >= rank {
			if i < len(h.bounds) {
				return h.bounds[i]
			}
			return math.Inf(1)
		}
	}
	return math.Inf(1)
}

func (h *Histogram) write(w io.Writer, name string) {
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", name, formatFloat(b), cum)
	}
	cum += h.counts[len(h.bounds)].Load()
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", name, cum)
	fmt.Fprintf(w, "%s_sum %s\n", name, formatFloat(math.Float64frombits(h.sum.Load())))
	fmt.Fprintf(w, "%s_count %d\n", name, h.count.Load())
}
func (h *Histogram) help() string { return h.desc }
func (h *Histogram) kind() string { return "histogram" }

// Histogram registers a histogram with the given ascending upper bounds.
func (r *Registry) Histogram(name, help string, bounds []float64) *Histogram {
	if !sort.Float64sAreSorted(bounds) {
		panic("metrics: histogram bounds not ascending: " + name)
	}
	h := &Histogram{bounds: append([]float64(nil), bounds...), counts: make([]atomic.Uint64, len(bounds)+1), desc: help}
	r.register(name, h)
	return h
}

// LatencyBuckets are upper bounds in seconds from 10 µs to 10 s.
var LatencyBuckets = []float64{1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// WriteTo writes every metric in the text exposition format, sorted by name.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	names := make([]string, 0, len(r.metrics))
	for n := range r.metrics {
		names = append(names, n)
	}
	ms := r.metrics
	r.mu.Unlock()
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		m := ms[n]
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", n, m.help(), n, m.kind())
		m.write(&b, n)
	}
	k, err := io.WriteString(w, b.String())
	return int64(k), err
}

// ServeHTTP serves the metrics, so a Registry is the /metrics handler.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	r.WriteTo(w)
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return fmt.Sprint(v)
}
