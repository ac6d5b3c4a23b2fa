// Command sframe-cs runs the HTTPS coordination service of
// draft-jennings-moq-e2ee-mls (see docs/coordination-service.md).
//
//	sframe-cs -db cs.db -listen :8443 -dev-cert -dev-cert-out cs-cert.pem
//	sframe-cs -db cs.db -listen :8443 -tls-cert cert.pem -tls-key key.pem
//
//	sframe-cs -db cs.db -listen :8443 -trust-anchor ca.pem -policy policy.json -cert cs.pem -key cs.key
//
//	sframe-cs -store etcd:https://e1:2379,https://e2:2379,https://e3:2379 -etcd-ca etcd-ca.pem \
//	    -etcd-cert cs-etcd.pem -etcd-key cs-etcd.key ...
//
// -store bolt:FILE (the default, also -db FILE) keeps the state in one
// bbolt file: one CS process. -store etcd:ENDPOINTS keeps it in an etcd
// cluster: any number of sframe-cs replicas with the same -store and
// -etcd-prefix serve the same groups behind any load balancer, and an
// election picks the one that forwards to MoQ (coord/store.EtcdLeader;
// docs/deploy.md).
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
//
// Every flag can also be set by an environment variable: SFRAME_CS_
// followed by the flag name in upper case with - as _ (e.g.
// SFRAME_CS_TRUST_ANCHOR); -h lists them. Flags win over the environment,
// which wins over the defaults; an empty variable counts as unset.
//
// Exit codes: 0 after -h or a clean shutdown (SIGINT, SIGTERM), 2 for bad
// flags or environment, 1 if the service failed.
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
	"strings"
	"time"

	"github.com/moqsframe/moqsframe/cmd/internal/cli"
	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/coord/moqforward"
	"github.com/moqsframe/moqsframe/coord/store"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/internal/devcert"
	"github.com/moqsframe/moqsframe/moq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() { cli.Main("sframe-cs", parseFlags, run) }

// envPrefix starts the environment variable of every flag.
const envPrefix = "SFRAME_CS_"

const synopsis = `usage: sframe-cs (-db FILE | -store bolt:FILE | -store etcd:ENDPOINTS [-etcd-ca ...]) [-listen ADDR] (-trust-anchor CA.pem -cert FILE -key FILE (-policy FILE | -policy-allow-all) | -dev-cert | -tls-cert FILE -tls-key FILE | -insecure-http) [-relay ADDR] [flags]

Runs the HTTPS coordination service of the security groups; see docs/coordination-service.md.`

// Config is what the flags and environment say; parseFlags has checked
// it, run loads the files it names.
type Config struct {
	Listen, DB string
	LogLevel   slog.Level
	MaxBody    int64

	// Store: Etcd empty means the bbolt file DB.
	Etcd                      []string // etcd client URLs
	EtcdCA, EtcdCert, EtcdKey string
	EtcdUser, EtcdPassword    string
	EtcdPrefix, ReplicaName   string
	EtcdLeaseTTL              time.Duration
	EtcdMaxRequestBytes       int

	// HTTPS: exactly one of TrustAnchor (with Cert, Key and Policy or
	// PolicyAllowAll), DevCert, TLSCert/TLSKey, InsecureHTTP.
	DevCert             bool
	DevCertOut          string
	DevCertHosts        []string
	TLSCert, TLSKey     string
	InsecureHTTP        bool
	TrustAnchor, Policy string
	PolicyAllowAll      bool
	Cert, Key           string // the CS's own certificate, with TrustAnchor
	Rate                float64
	Burst               int
	PendingJoinTTL      time.Duration
	LivenessTimeout     time.Duration // members silent this long are reported silent; a group all silent is retired

	// MoQ forwarding; Relay empty: log only.
	Relay           string
	NamespacePrefix []string
	Insecure        bool   // do not verify the relay's certificate
	RelayCA         string // verify it with these CAs
	RedeliverEvery  time.Duration
}

// parseFlags parses args (without the program name) and the environment
// (getenv) into a checked Config. Errors name the flag.
func parseFlags(args []string, getenv func(string) string) (Config, error) {
	var (
		c                                Config
		logLevel, devCertHosts, nsPrefix string
		storeSpec                        string
	)
	fs := flag.NewFlagSet("sframe-cs", flag.ContinueOnError)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8443", "address to listen on")
	fs.StringVar(&c.DB, "db", "sframe-cs.db", "bbolt database file (created if missing); short for -store bolt:FILE")
	fs.StringVar(&storeSpec, "store", "", "where the state lives: bolt:FILE (one CS process) or etcd:URL,URL,... (replicated; host:port means http://, or https:// with -etcd-ca)")
	fs.StringVar(&c.EtcdCA, "etcd-ca", "", "with -store etcd: verify the etcd members with the CA certificates in this PEM file (TLS)")
	fs.StringVar(&c.EtcdCert, "etcd-cert", "", "with -store etcd: client certificate (PEM) for etcd's --client-cert-auth")
	fs.StringVar(&c.EtcdKey, "etcd-key", "", "with -store etcd: private key of -etcd-cert (PEM)")
	fs.StringVar(&c.EtcdUser, "etcd-user", "", "with -store etcd: etcd user name (etcd auth enabled)")
	fs.StringVar(&c.EtcdPassword, "etcd-password", "", "with -store etcd: password of -etcd-user (prefer the environment variable)")
	fs.StringVar(&c.EtcdPrefix, "etcd-prefix", store.DefaultEtcdPrefix, "with -store etcd: key prefix; replicas serving the same groups use the same one")
	fs.DurationVar(&c.EtcdLeaseTTL, "etcd-lease-ttl", store.DefaultLeaseTTL, "with -store etcd: forwarder lease; groups go this long without a forwarder when the forwarding replica dies")
	fs.IntVar(&c.EtcdMaxRequestBytes, "etcd-max-request-bytes", store.DefaultEtcdMaxRequestBytes, "with -store etcd: the cluster's --max-request-bytes; larger items are refused with 413")
	fs.StringVar(&c.ReplicaName, "replica-name", "", "with -store etcd: this replica's name in the forwarder election (default host name and process ID)")
	fs.BoolVar(&c.DevCert, "dev-cert", false, "serve HTTPS with a fresh self-signed development certificate")
	fs.StringVar(&c.DevCertOut, "dev-cert-out", "", "write the development certificate (PEM, no key) here for clients to trust")
	fs.StringVar(&devCertHosts, "dev-cert-hosts", "localhost,127.0.0.1,::1", "comma-separated names/IPs for the development certificate")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate chain (PEM)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key (PEM)")
	fs.BoolVar(&c.InsecureHTTP, "insecure-http", false, "serve plain HTTP (testing only)")
	fs.Int64Var(&c.MaxBody, "max-body", coord.DefaultMaxBodyBytes, "largest accepted request body in bytes")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (logs go to stderr)")
	fs.DurationVar(&c.RedeliverEvery, "redeliver-every", 5*time.Second, "how often to retry forwarding queued items")
	fs.DurationVar(&c.LivenessTimeout, "liveness-timeout", coord.DefaultLivenessTimeout, "a member not heard from (heartbeats, acks) this long is reported silent and removed by a committer; a group whose members were all silent this long is retired at the next join; negative: never (give the sidecars the same value)")
	fs.StringVar(&c.Relay, "relay", "", "MoQ relay address (QUIC host:port) to publish the group tracks on; empty: log only")
	fs.StringVar(&nsPrefix, "namespace-prefix", strings.Join(moqforward.DefaultPrefix, "/"), "MoQ namespace prefix, fields separated by /; tracks are in [prefix..., group]")
	fs.BoolVar(&c.Insecure, "insecure", false, "do not verify the relay's certificate (development only)")
	fs.StringVar(&c.RelayCA, "relay-ca", "", "verify the relay's certificate with the CA certificates in this PEM file (instead of the system roots)")
	fs.StringVar(&c.TrustAnchor, "trust-anchor", "", "deployment CA certificates (PEM): require TLS client certificates chained to them and authorize by -policy")
	fs.StringVar(&c.Policy, "policy", "", "admission policy (JSON: which identities may be in which group); with -trust-anchor")
	fs.BoolVar(&c.PolicyAllowAll, "policy-allow-all", false, "with -trust-anchor: admit every identity with a valid certificate to every group (instead of -policy)")
	fs.StringVar(&c.Cert, "cert", "", "the CS's certificate chain (PEM, issued by the deployment CA, with the CS's host names); with -trust-anchor")
	fs.StringVar(&c.Key, "key", "", "the private key of -cert (PEM)")
	fs.Float64Var(&c.Rate, "rate", coord.DefaultRate, "with -trust-anchor: requests per second per identity")
	fs.IntVar(&c.Burst, "burst", coord.DefaultBurst, "with -trust-anchor: request burst per identity")
	fs.DurationVar(&c.PendingJoinTTL, "pending-join-ttl", coord.DefaultPendingJoinTTL, "with -trust-anchor: a join request stops counting as pending after this long")
	if _, err := cli.Parse(fs, args, envPrefix, synopsis, getenv); err != nil {
		return c, err
	}
	var err error
	if c.LogLevel, err = cli.ParseLevel(logLevel); err != nil {
		return c, err
	}
	if err := c.parseStore(storeSpec); err != nil {
		return c, err
	}
	c.DevCertHosts = strings.Split(devCertHosts, ",")
	c.NamespacePrefix = strings.Split(strings.Trim(nsPrefix, "/"), "/")
	if err := c.checkAuth(); err != nil {
		return c, err
	}
	modes := 0
	for _, b := range []bool{c.DevCert, c.TLSCert != "" || c.TLSKey != "", c.InsecureHTTP, c.TrustAnchor != ""} {
		if b {
			modes++
		}
	}
	switch {
	case modes == 0:
		return c, errors.New("HTTPS needs a certificate: pass -trust-anchor with -cert and -key, -dev-cert for a development certificate, or -tls-cert and -tls-key")
	case modes > 1:
		return c, errors.New("choose one of -trust-anchor (with -cert/-key), -dev-cert, -tls-cert/-tls-key, -insecure-http")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return c, errors.New("-tls-cert and -tls-key must be given together")
	}
	return c, nil
}

// parseStore reads -store into DB or Etcd and checks the etcd flags.
func (c *Config) parseStore(spec string) error {
	kind, arg, _ := strings.Cut(spec, ":")
	switch {
	case spec == "":
	case kind == "bolt" && arg != "":
		c.DB = arg
	case kind == "etcd" && arg != "":
		for _, ep := range strings.Split(arg, ",") {
			if ep == "" {
				return fmt.Errorf("-store etcd:%s: empty endpoint", arg)
			}
			if !strings.Contains(ep, "://") {
				scheme := "http://"
				if c.EtcdCA != "" || c.EtcdCert != "" {
					scheme = "https://"
				}
				ep = scheme + ep
			}
			c.Etcd = append(c.Etcd, ep)
		}
	default:
		return fmt.Errorf("-store %q: want bolt:FILE or etcd:HOST:PORT[,HOST:PORT]", spec)
	}
	etcdFlags := c.EtcdCA != "" || c.EtcdCert != "" || c.EtcdKey != "" || c.EtcdUser != "" || c.EtcdPassword != ""
	switch {
	case c.Etcd == nil && etcdFlags:
		return errors.New("-etcd-ca, -etcd-cert, -etcd-key, -etcd-user and -etcd-password need -store etcd:ENDPOINTS")
	case (c.EtcdCert == "") != (c.EtcdKey == ""):
		return errors.New("-etcd-cert and -etcd-key must be given together")
	case (c.EtcdUser == "") != (c.EtcdPassword == ""):
		return errors.New("-etcd-user and -etcd-password must be given together")
	case c.EtcdLeaseTTL < 2*time.Second:
		return errors.New("-etcd-lease-ttl must be at least 2s")
	case c.EtcdMaxRequestBytes < 64<<10:
		return errors.New("-etcd-max-request-bytes must be at least 65536")
	}
	if c.ReplicaName == "" {
		host, _ := os.Hostname()
		c.ReplicaName = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	return nil
}

// openStore opens the bbolt file or connects to etcd.
func openStore(ctx context.Context, c Config) (store.Store, error) {
	if c.Etcd == nil {
		return store.OpenBoltStore(c.DB)
	}
	var tc *tls.Config
	if c.EtcdCA != "" || c.EtcdCert != "" {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
		if c.EtcdCA != "" {
			pemBytes, err := os.ReadFile(c.EtcdCA)
			if err != nil {
				return nil, fmt.Errorf("-etcd-ca: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pemBytes) {
				return nil, fmt.Errorf("-etcd-ca %s: no PEM certificates", c.EtcdCA)
			}
		}
		if c.EtcdCert != "" {
			cert, err := tls.LoadX509KeyPair(c.EtcdCert, c.EtcdKey)
			if err != nil {
				return nil, fmt.Errorf("-etcd-cert/-etcd-key: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
	}
	return store.OpenEtcdStore(ctx, store.EtcdConfig{
		Endpoints: c.Etcd, TLS: tc, Username: c.EtcdUser, Password: c.EtcdPassword,
		Prefix: c.EtcdPrefix, MaxRequestBytes: c.EtcdMaxRequestBytes,
	})
}

// checkAuth checks the flags of the authenticated mode.
func (c *Config) checkAuth() error {
	switch {
	case c.RelayCA != "" && c.Insecure:
		return errors.New("-relay-ca and -insecure exclude each other")
	case c.TrustAnchor == "":
		if c.Policy != "" || c.PolicyAllowAll || c.Cert != "" || c.Key != "" {
			return errors.New("-policy, -policy-allow-all, -cert and -key need -trust-anchor")
		}
		return nil
	case c.Cert == "" || c.Key == "":
		return errors.New("-trust-anchor needs -cert and -key: the CS's own certificate issued by the deployment CA")
	case (c.Policy == "") == !c.PolicyAllowAll:
		return errors.New("-trust-anchor needs exactly one of -policy FILE or -policy-allow-all")
	case c.Rate <= 0 || c.Burst <= 0 || c.PendingJoinTTL <= 0:
		return errors.New("-rate, -burst and -pending-join-ttl must be positive")
	}
	return nil
}

// authMode loads the anchors, the policy and the CS's certificate: the
// coord.Auth, the server's mutual TLS configuration and the certificate to
// present to the relay.
func authMode(c Config, m *coord.Metrics) (*coord.Auth, *tls.Config, *identity.Certificate, error) {
	v, err := identity.LoadVerifier(c.TrustAnchor)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("-trust-anchor: %w", err)
	}
	pol := identity.AllowAll()
	if c.Policy != "" {
		if pol, err = identity.LoadPolicy(c.Policy); err != nil {
			return nil, nil, nil, fmt.Errorf("-policy: %w", err)
		}
	}
	cert, err := identity.LoadCertificate(c.Cert, c.Key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("-cert/-key: %w", err)
	}
	// The CS's own certificate must verify with the anchor too (and name
	// the CS): it is its identity towards the relay.
	if _, err := v.Verify(cert.Chain, nil); err != nil {
		return nil, nil, nil, fmt.Errorf("-cert does not verify with -trust-anchor: %w", err)
	}
	auth := &coord.Auth{Policy: pol, Verifier: v, Rate: c.Rate, Burst: c.Burst, PendingJoinTTL: c.PendingJoinTTL}
	return auth, identity.ServerTLS(cert, v, m.HandshakeRefused), cert, nil
}

// run serves until ctx ends, then shuts the server down gracefully. It
// logs to stderr; nothing goes to stdout.
func run(ctx context.Context, c Config, _, stderr io.Writer) error {
	log := cli.NewLogger(stderr, c.LogLevel)
	st, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	defer st.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := coord.NewMetrics(reg)
	var (
		auth      *coord.Auth
		serverTLS *tls.Config
		csCert    *identity.Certificate
	)
	if c.TrustAnchor != "" {
		if auth, serverTLS, csCert, err = authMode(c, metrics); err != nil {
			return err
		}
		name, _ := identity.Name(csCert.Leaf)
		log.Info("mutual TLS: clients need a certificate from the trust anchor", "cs_identity", name,
			"policy", c.Policy, "policy_allow_all", c.PolicyAllowAll, "rate", c.Rate, "burst", c.Burst)
	} else {
		log.Warn("no -trust-anchor: the CS is open, anyone who reaches it may create groups, post requests, commits and acks; development only")
	}
	fwd, closeFwd, err := forwarder(c, csCert, log)
	if err != nil {
		return err
	}
	defer closeFwd()
	var leader *store.EtcdLeader
	if es, ok := st.(*store.EtcdStore); ok {
		// Replicas: only the elected one holds the relay session and
		// forwards; the others decide and queue.
		onChange := func(bool) {}
		if sw, ok := fwd.(*moqforward.Switched); ok {
			onChange = func(leading bool) {
				if !leading {
					sw.Off()
					return
				}
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if err := sw.On(wctx); err != nil {
					log.Warn("relay not reachable yet; items stay queued until it is", "relay", c.Relay, "err", err)
				}
			}
		}
		leader = store.NewEtcdLeader(es, store.EtcdLeaderConfig{Name: c.ReplicaName, TTL: c.EtcdLeaseTTL, OnChange: onChange, Logger: log})
		defer leader.Close()
	}
	cfg := coord.Config{
		Store: st, Forwarder: fwd, Logger: log, Metrics: metrics, MaxBodyBytes: c.MaxBody, Auth: auth,
		LivenessTimeout: c.LivenessTimeout,
	}
	if leader != nil {
		cfg.Leader = leader
	}
	srv, err := coord.NewServer(cfg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", srv)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := st.PendingGroups(r.Context()); err != nil {
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	serveMetrics(mux, reg)
	hs := cli.NewServer(mux, log)
	if hs.TLSConfig, err = serverTLSConfig(c, serverTLS, log); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	// Forward anything decided but not forwarded before the last shutdown
	// or crash, then keep retrying in the background.
	if left, err := srv.Redeliver(ctx); err != nil || left > 0 {
		log.Warn("startup redelivery incomplete", "groups_pending", left, "err", err)
	}
	rctx, stopRedeliver := context.WithCancel(ctx)
	redelivered := make(chan struct{})
	go func() { redeliver(rctx, srv, c.RedeliverEvery, log); close(redelivered) }()
	defer func() { stopRedeliver(); <-redelivered }()
	forwarding := make(chan struct{})
	go func() { srv.RunForwarding(rctx); close(forwarding) }()
	defer func() { stopRedeliver(); <-forwarding }()

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
	if c.Etcd != nil {
		log.Info("sframe-cs listening", "addr", ln.Addr().String(), "scheme", scheme, "store", "etcd", "endpoints", c.Etcd, "replica", c.ReplicaName)
	} else {
		log.Info("sframe-cs listening", "addr", ln.Addr().String(), "scheme", scheme, "db", c.DB)
	}

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
	stopRedeliver()
	<-forwarding
	if leader != nil {
		leader.Close() // resign: another replica takes over at once
	}
	return st.Close()
}

// serveMetrics serves the process's registry at GET /metrics on mux.
func serveMetrics(mux *http.ServeMux, reg prometheus.Gatherer) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
}

// forwarder publishes accepted items on the group's MoQ tracks through
// -relay, or only logs them without one.
func forwarder(c Config, csCert *identity.Certificate, log *slog.Logger) (coord.Forwarder, func(), error) {
	if c.Relay == "" {
		return logForwarder{log}, func() {}, nil
	}
	var relayRoots *x509.CertPool
	if c.RelayCA != "" {
		anchors, err := identity.LoadTrustAnchors(c.RelayCA)
		if err != nil {
			return nil, nil, fmt.Errorf("-relay-ca: %w", err)
		}
		relayRoots = x509.NewCertPool()
		for _, a := range anchors {
			relayRoots.AddCert(a)
		}
	}
	mcfg := moqforward.Config{
		Relay: c.Relay, Prefix: c.NamespacePrefix, Logger: log,
		Certificate: csCert, RelayRoots: relayRoots,
		MoQ: moq.Config{InsecureSkipVerify: c.Insecure, Logger: log},
	}
	if c.Etcd != nil {
		// Connected only while this replica is the elected forwarder.
		sw := moqforward.NewSwitched(mcfg)
		return sw, func() { sw.Close() }, nil
	}
	mf, err := moqforward.New(mcfg)
	if err != nil {
		return nil, nil, err
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := mf.WaitConnected(wctx); err != nil {
		log.Warn("relay not reachable yet; items stay queued until it is", "relay", c.Relay)
	}
	return mf, func() { mf.Close() }, nil
}

// serverTLSConfig is the HTTPS configuration: mutual TLS (given), a
// development certificate, -tls-cert/-tls-key, or nil for -insecure-http.
func serverTLSConfig(c Config, mutual *tls.Config, log *slog.Logger) (*tls.Config, error) {
	switch {
	case mutual != nil:
		return mutual, nil
	case c.DevCert:
		cert, pemBytes, _, err := devcert.New(c.DevCertHosts, 30*24*time.Hour)
		if err != nil {
			return nil, err
		}
		if c.DevCertOut != "" {
			if err := os.WriteFile(c.DevCertOut, pemBytes, 0o644); err != nil {
				return nil, fmt.Errorf("writing -dev-cert-out: %w", err)
			}
		}
		log.Warn("serving with a self-signed development certificate; do not use in production", "cert_out", c.DevCertOut)
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	case c.TLSCert != "":
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("loading -tls-cert/-tls-key: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	}
	return nil, nil
}

// redeliver retries forwarding queued items every interval until ctx ends.
func redeliver(ctx context.Context, srv *coord.Server, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
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
