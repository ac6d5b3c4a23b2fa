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
	"github.com/moqsframe/moqsframe/internal/metrics"
	"github.com/moqsframe/moqsframe/sidecar"
)

// newMetrics creates the registry, with the relay's gauges and (group
// mode, member not nil) the group's.
func newMetrics(relay *sidecar.RelayClient, member *group.Member) *metrics.Registry {
	reg := &metrics.Registry{}
	reg.GaugeFunc("sidecar_relay_subscribers", "Subscribers the relay holds on this sidecar's published tracks.",
		func() float64 { return float64(relay.Subscribers()) })
	reg.CounterFunc("sidecar_relay_reconnects_total", "Times the relay session was lost and re-established.",
		func() float64 { return float64(relay.Reconnects.Load()) })
	if member != nil {
		reg.GaugeFunc("sidecar_group_members", "Members in the verified roster of the security group's current epoch.",
			func() float64 { return float64(len(member.Roster())) })
		reg.CounterFunc("sidecar_group_refusals_total", "Credentials this member refused (KeyPackages, Welcomes, commits).",
			func() float64 { return float64(member.Stats().Refused) })
	}
	return reg
}

// serveMetrics serves reg at /metrics and the relay connection at
// /healthz on addr (empty: not served) until stop. Every metric must be
// registered by then: a Registry may not register while it is read.
func serveMetrics(addr string, reg *metrics.Registry, relay *sidecar.RelayClient, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", reg)
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
