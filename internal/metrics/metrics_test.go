package metrics

import (
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestExposition(t *testing.T) {
	var r Registry
	c := r.Counter("app_objects_total", "Objects processed.")
	h := r.Histogram("app_latency_seconds", "Latency.", []float64{0.001, 0.01})
	r.GaugeFunc("app_queue", "Queue depth.", func() float64 { return 3 })
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				c.Inc()
				h.Observe(0.005)
			}
		}()
	}
	wg.Wait()
	h.Observe(5)
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := rec.Body.String()
	for _, want := range []string{
		"# TYPE app_objects_total counter\napp_objects_total 4000\n",
		`app_latency_seconds_bucket{le="0.001"} 0`,
		`app_latency_seconds_bucket{le="0.01"} 4000`,
		`app_latency_seconds_bucket{le="+Inf"} 4001`,
		"app_latency_seconds_count 4001",
		"app_latency_seconds_sum 25",
		"# TYPE app_queue gauge\napp_queue 3\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if q := h.Quantile(0.5); q != 0.01 {
		t.Errorf("p50 = %v", q)
	}
	if q := h.Quantile(1); q < 1e300 {
		t.Errorf("p100 = %v, want +Inf", q)
	}
}
