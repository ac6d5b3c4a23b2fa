package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/moqsframe/moqsframe/cmd/internal/cli"
	"github.com/moqsframe/moqsframe/group"
	"github.com/moqsframe/moqsframe/sidecar"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
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

// listenMetrics binds the /metrics and /healthz address (empty: a
// listener that is never served).
func listenMetrics(addr string) (net.Listener, error) {
	if addr == "" {
		return nopListener{}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	return ln, nil
}

// nopListener stands for -metrics "" (off).
type nopListener struct{ net.Listener }

func (nopListener) Close() error { return nil }

// serveMetrics serves reg at /metrics and the relay connection at
// /healthz on ln until stop. /healthz answers 503 while no session to the
// relay is up: a relay that died without closing the connection is noticed
// within -relay-timeout.
func serveMetrics(ln net.Listener, reg prometheus.Gatherer, relay *sidecar.RelayClient, log *slog.Logger) (stop func()) {
	if _, off := ln.(nopListener); off {
		return func() {}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !relay.Connected() {
			http.Error(w, "relay not connected", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	log.Info("metrics", "addr", ln.Addr())
	return cli.Serve(ln, mux, log)
}

// counterValue reads a counter for the exit summary.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if c.Write(&m) != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
