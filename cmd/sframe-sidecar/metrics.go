package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/moqsframe/moqsframe/cmd/internal/cli"
	"github.com/moqsframe/moqsframe/group"
	"github.com/moqsframe/moqsframe/sidecar"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newMetrics creates the process's registry: Go and process collectors,
// the relay's gauges and (group mode, member not nil) the group's.
func newMetrics(relay *sidecar.RelayClient, member *group.Member) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		relay.Collector())
	if member != nil {
		reg.MustRegister(sidecar.GroupCollector(member))
	}
	return reg
}

// serveMetrics serves reg at /metrics and the relay connection at
// /healthz on addr (empty: not served) until stop.
func serveMetrics(addr string, reg prometheus.Gatherer, relay *sidecar.RelayClient, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Millisecond)
		defer cancel()
		if relay.WaitConnected(ctx) != nil {
			http.Error(w, "relay not connected", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	log.Info("metrics", "addr", ln.Addr())
	return cli.Serve(ln, mux, log), nil
}
