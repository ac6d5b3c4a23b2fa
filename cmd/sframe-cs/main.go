// Command sframe-cs runs the HTTPS coordination service of
// draft-jennings-moq-e2ee-mls (see docs/coordination-service.md).
//
//	sframe-cs -db cs.db -listen :8443 -dev-cert -dev-cert-out cs-cert.pem
//	sframe-cs -db cs.db -listen :8443 -tls-cert cert.pem -tls-key key.pem
//
//	sframe-cs -db cs.db -listen :8443 -trust-anchor ca.pem -policy policy.json -cert cs.pem -key cs.key
//
//	sframe-cs ... -relay 127.0.0.1:4443 -namespace-prefix moqsframe/cs [-relay-ca ca.pem | -insecure]
//
// With -trust-anchor every request needs a TLS client certificate chained to
// the anchor, and the policy decides who may do what in which group
// (coord.Auth); -cert/-key are the CS's own certificate, also presented to
// the relay. Without it the CS is open to anyone who reaches it
// (development).
//
// With -relay, accepted items are published on the group's MoQ tracks through
// the relay (coord/moqforward). Without it they are only logged (without
// payloads): a CS without MoQ, whose members use the catch-up endpoints.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/coord/moqforward"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/internal/devcert"
	"github.com/moqsframe/moqsframe/moq"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sframe-cs:", err)
		os.Exit(1)
	}
}

type options struct {
	listen, db               string
	devCert                  bool
	devCertOut, devCertHosts string
	tlsCert, tlsKey          string
	insecureHTTP             bool
	maxBody                  int64
	logLevel                 string
	redeliverEvery           time.Duration
	relay, nsPrefix          string
	insecure                 bool
	relayCA                  string
	trustAnchor, policy      string
	policyAllowAll           bool
	cert, key                string
	rate                     float64
	burst                    int
	pendingJoinTTL           time.Duration
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("sframe-cs", flag.ContinueOnError)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8443", "address to listen on")
	fs.StringVar(&o.db, "db", "sframe-cs.db", "bbolt database file (created if missing)")
	fs.BoolVar(&o.devCert, "dev-cert", false, "serve HTTPS with a fresh self-signed development certificate")
	fs.StringVar(&o.devCertOut, "dev-cert-out", "", "write the development certificate (PEM, no key) here for clients to trust")
	fs.StringVar(&o.devCertHosts, "dev-cert-hosts", "localhost,127.0.0.1,::1", "comma-separated names/IPs for the development certificate")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate chain (PEM)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "TLS private key (PEM)")
	fs.BoolVar(&o.insecureHTTP, "insecure-http", false, "serve plain HTTP (testing only)")
	fs.Int64Var(&o.maxBody, "max-body", coord.DefaultMaxBodyBytes, "largest accepted request body in bytes")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&o.redeliverEvery, "redeliver-every", 5*time.Second, "how often to retry forwarding queued items")
	fs.StringVar(&o.relay, "relay", "", "MoQ relay address (QUIC host:port) to publish the group tracks on; empty: log only")
	fs.StringVar(&o.nsPrefix, "namespace-prefix", strings.Join(moqforward.DefaultPrefix, "/"), "MoQ namespace prefix, fields separated by /; tracks are in [prefix..., group]")
	fs.BoolVar(&o.insecure, "insecure", false, "do not verify the relay's certificate (development only)")
	fs.StringVar(&o.relayCA, "relay-ca", "", "verify the relay's certificate with the CA certificates in this PEM file (instead of the system roots)")
	fs.StringVar(&o.trustAnchor, "trust-anchor", "", "deployment CA certificates (PEM): require TLS client certificates chained to them and authorize by -policy")
	fs.StringVar(&o.policy, "policy", "", "admission policy (JSON: which identities may be in which group); with -trust-anchor")
	fs.BoolVar(&o.policyAllowAll, "policy-allow-all", false, "with -trust-anchor: admit every identity with a valid certificate to every group (instead of -policy)")
	fs.StringVar(&o.cert, "cert", "", "the CS's certificate chain (PEM, issued by the deployment CA, with the CS's host names); with -trust-anchor")
	fs.StringVar(&o.key, "key", "", "the private key of -cert (PEM)")
	fs.Float64Var(&o.rate, "rate", coord.DefaultRate, "with -trust-anchor: requests per second per identity")
	fs.IntVar(&o.burst, "burst", coord.DefaultBurst, "with -trust-anchor: request burst per identity")
	fs.DurationVar(&o.pendingJoinTTL, "pending-join-ttl", coord.DefaultPendingJoinTTL, "with -trust-anchor: a join request stops counting as pending after this long")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := o.checkAuth(); err != nil {
		return nil, err
	}
	modes := 0
	for _, b := range []bool{o.devCert, o.tlsCert != "" || o.tlsKey != "", o.insecureHTTP, o.trustAnchor != ""} {
		if b {
			modes++
		}
	}
	switch {
	case modes == 0:
		return nil, errors.New("HTTPS needs a certificate: pass -trust-anchor with -cert and -key, -dev-cert for a development certificate, or -tls-cert and -tls-key")
	case modes > 1:
		return nil, errors.New("choose one of -trust-anchor (with -cert/-key), -dev-cert, -tls-cert/-tls-key, -insecure-http")
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return nil, errors.New("-tls-cert and -tls-key must be given together")
	}
	return o, nil
}

// checkAuth checks the flags of the authenticated mode.
func (o *options) checkAuth() error {
	switch {
	case o.relayCA != "" && o.insecure:
		return errors.New("-relay-ca and -insecure exclude each other")
	case o.trustAnchor == "":
		if o.policy != "" || o.policyAllowAll || o.cert != "" || o.key != "" {
			return errors.New("-policy, -policy-allow-all, -cert and -key need -trust-anchor")
		}
		return nil
	case o.cert == "" || o.key == "":
		return errors.New("-trust-anchor needs -cert and -key: the CS's own certificate issued by the deployment CA")
	case (o.policy == "") == !o.policyAllowAll:
		return errors.New("-trust-anchor needs exactly one of -policy FILE or -policy-allow-all")
	case o.rate <= 0 || o.burst <= 0 || o.pendingJoinTTL <= 0:
		return errors.New("-rate, -burst and -pending-join-ttl must be positive")
	}
	return nil
}

// authMode loads the anchors, the policy and the CS's certificate: the
// coord.Auth, the server's mutual TLS configuration and the certificate to
// present to the relay.
func (o *options) authMode(m *coord.Metrics) (*coord.Auth, *tls.Config, *identity.Certificate, error) {
	v, err := identity.LoadVerifier(o.trustAnchor)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("-trust-anchor: %w", err)
	}
	pol := identity.AllowAll()
	if o.policy != "" {
		if pol, err = identity.LoadPolicy(o.policy); err != nil {
			return nil, nil, nil, fmt.Errorf("-policy: %w", err)
		}
	}
	cert, err := identity.LoadCertificate(o.cert, o.key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("-cert/-key: %w", err)
	}
	// The CS's own certificate must verify with the anchor too (and name
	// the CS): it is its identity towards the relay.
	if _, err := v.Verify(cert.Chain, nil); err != nil {
		return nil, nil, nil, fmt.Errorf("-cert does not verify with -trust-anchor: %w", err)
	}
	auth := &coord.Auth{Policy: pol, Verifier: v, Rate: o.rate, Burst: o.burst, PendingJoinTTL: o.pendingJoinTTL}
	return auth, identity.ServerTLS(cert, v, m.HandshakeRefused), cert, nil
}

func run(args []string, logOut io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))

	store, err := coord.OpenBoltStore(o.db)
	if err != nil {
		return err
	}
	defer store.Close()

	var (
		auth      *coord.Auth
		serverTLS *tls.Config
		csCert    *identity.Certificate
		reg       = prometheus.NewRegistry()
		metrics   = coord.NewMetrics(reg)
	)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if o.trustAnchor != "" {
		if auth, serverTLS, csCert, err = o.authMode(metrics); err != nil {
			return err
		}
		name, _ := identity.Name(csCert.Leaf)
		log.Info("mutual TLS: clients need a certificate from the trust anchor", "cs_identity", name,
			"policy", o.policy, "policy_allow_all", o.policyAllowAll, "rate", o.rate, "burst", o.burst)
	} else {
		log.Warn("no -trust-anchor: the CS is open, anyone who reaches it may create groups, post requests, commits and acks; development only")
	}
	var relayRoots *x509.CertPool
	if o.relayCA != "" {
		anchors, err := identity.LoadTrustAnchors(o.relayCA)
		if err != nil {
			return fmt.Errorf("-relay-ca: %w", err)
		}
		relayRoots = x509.NewCertPool()
		for _, a := range anchors {
			relayRoots.AddCert(a)
		}
	}

	var fwd coord.Forwarder = logForwarder{log}
	if o.relay != "" {
		prefix := strings.Split(strings.Trim(o.nsPrefix, "/"), "/")
		mf, err := moqforward.New(moqforward.Config{
			Relay: o.relay, Prefix: prefix, Logger: log,
			Certificate: csCert, RelayRoots: relayRoots,
			MoQ: moq.Config{InsecureSkipVerify: o.insecure, Logger: log},
		})
		if err != nil {
			return err
		}
		defer mf.Close()
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := mf.WaitConnected(wctx); err != nil {
			log.Warn("relay not reachable yet; items stay queued until it is", "relay", o.relay)
		}
		wcancel()
		fwd = mf
	}
	srv, err := coord.NewServer(coord.Config{
		Store: store, Forwarder: fwd, Logger: log, Metrics: metrics, MaxBodyBytes: o.maxBody, Auth: auth,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", srv)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := store.PendingGroups(r.Context()); err != nil {
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	switch {
	case serverTLS != nil:
		hs.TLSConfig = serverTLS
	case o.devCert:
		cert, pemBytes, _, err := devcert.New(strings.Split(o.devCertHosts, ","), 30*24*time.Hour)
		if err != nil {
			return err
		}
		if o.devCertOut != "" {
			if err := os.WriteFile(o.devCertOut, pemBytes, 0o644); err != nil {
				return fmt.Errorf("writing -dev-cert-out: %w", err)
			}
		}
		hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		log.Warn("serving with a self-signed development certificate; do not use in production", "cert_out", o.devCertOut)
	case o.tlsCert != "":
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return fmt.Errorf("loading -tls-cert/-tls-key: %w", err)
		}
		hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	// Forward anything decided but not forwarded before the last shutdown
	// or crash, then keep retrying in the background.
	if left, err := srv.Redeliver(ctx); err != nil || left > 0 {
		log.Warn("startup redelivery incomplete", "groups_pending", left, "err", err)
	}
	go func() {
		t := time.NewTicker(o.redeliverEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if left, err := srv.Redeliver(ctx); err != nil || left > 0 {
					log.Warn("redelivery incomplete", "groups_pending", left, "err", err)
				}
			}
		}
	}()

	errc := make(chan error, 1)
	go func() {
		if hs.TLSConfig == nil {
			errc <- hs.Serve(ln)
			return
		}
		errc <- hs.ServeTLS(ln, "", "")
	}()
	scheme := "https"
	if hs.TLSConfig == nil {
		scheme = "http"
	}
	log.Info("sframe-cs listening", "addr", ln.Addr().String(), "scheme", scheme, "db", o.db)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shCtx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return store.Close()
}

// logForwarder stands in for the MoQ forwarder until it is wired: it logs
// what would be published (sizes only, never payloads) and succeeds.
type logForwarder struct{ log *slog.Logger }

func (f logForwarder) ForwardRequest(_ context.Context, group string, seq uint64, req []byte) error {
	f.log.Info("forward", "track", "request", "group", group, "moq_group", seq, "bytes", len(req))
	return nil
}

func (f logForwarder) ForwardCommit(_ context.Context, group string, epoch uint64, commit []byte) error {
	f.log.Info("forward", "track", "commit", "group", group, "moq_group", epoch, "bytes", len(commit))
	return nil
}

func (f logForwarder) ForwardWelcome(_ context.Context, group string, epoch uint64, welcome []byte) error {
	f.log.Info("forward", "track", "welcome", "group", group, "moq_group", epoch, "bytes", len(welcome))
	return nil
}
