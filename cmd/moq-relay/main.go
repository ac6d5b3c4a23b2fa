// Command moq-relay runs the MoQ (draft-11, raw QUIC, ALPN moq-00) relay.
// It only parses flags and wires the relay package to an HTTP metrics
// endpoint; see docs/relay.md.
//
// Every flag can also be set by an environment variable: MOQ_RELAY_
// followed by the flag name in upper case with - as _ (e.g.
// MOQ_RELAY_TRUST_ANCHOR); -h lists them. Flags win over the environment,
// which wins over the defaults; an empty variable counts as unset.
//
// Exit codes: 0 after -h or a clean shutdown (SIGINT, SIGTERM), 2 for bad
// flags or environment, 1 if the relay failed.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/moqsframe/moqsframe/cmd/internal/cli"
	"github.com/moqsframe/moqsframe/coord/moqforward"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/moq"
	"github.com/moqsframe/moqsframe/relay"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

func main() { cli.Main("moq-relay", parseFlags, run) }

// envPrefix starts the environment variable of every flag.
const envPrefix = "MOQ_RELAY_"

const synopsis = `usage: moq-relay [-listen ADDR] [-cert FILE -key FILE [-trust-anchor CA.pem]] [-upstream ADDR[=NS,...]]... [flags]

Relays MoQ (draft-11, raw QUIC, ALPN moq-00) between publishers and subscribers; see docs/relay.md.`

// Config is what the flags and environment say; parseFlags has checked
// it, relayConfig loads the files it names.
type Config struct {
	Listen            string // UDP address for MoQ over QUIC
	CertFile, KeyFile string // both or neither (a development certificate)
	Metrics           string // /metrics and /healthz address; empty: off
	LogLevel          slog.Level
	MaxObjectSize     int
	Queue             int // per-subscriber queue length
	QueueBytes        int // per-subscriber queue bound in payload bytes; 0: default
	MaxDrops          int
	IdleTimeout       time.Duration

	// Authorization, with TrustAnchor only.
	TrustAnchor        string
	CSPrefix           []string
	CSIdentity         string
	SubscribeNeedsCert bool
	RelayIdentities    []string // with TrustAnchor: may announce for others

	// Relay trees.
	Upstreams        []relay.Upstream
	UpstreamInsecure bool // skip verifying upstream certificates (dev)
}

// parseFlags parses args (without the program name) and the environment
// (getenv) into a checked Config. Errors are for the user: they name the
// flag.
func parseFlags(args []string, getenv func(string) string) (Config, error) {
	var (
		c                  Config
		logLevel, csPrefix string
	)
	fs := flag.NewFlagSet("moq-relay", flag.ContinueOnError)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:4443", "UDP address for MoQ over QUIC")
	fs.StringVar(&c.CertFile, "cert", "", "TLS certificate (PEM); with -key. Without both, a self-signed dev certificate is generated")
	fs.StringVar(&c.KeyFile, "key", "", "TLS private key (PEM)")
	fs.StringVar(&c.Metrics, "metrics", "127.0.0.1:9090", "HTTP address for /metrics and /healthz (empty: disabled)")
	fs.IntVar(&c.MaxObjectSize, "max-object-size", moq.DefaultMaxObjectSize, "largest object payload in bytes, both directions")
	fs.IntVar(&c.Queue, "queue", moq.DefaultSubscriberQueue, "per-subscriber queue length in objects")
	fs.IntVar(&c.QueueBytes, "queue-bytes", 0, fmt.Sprintf("per-subscriber queue bound in payload bytes (0: %d or 2 × -max-object-size, whichever is larger; at least -max-object-size)", moq.DefaultSubscriberQueueBytes))
	fs.IntVar(&c.MaxDrops, "max-drops", 1000, "disconnect a subscriber after this many dropped objects (-1: never)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 10*time.Second, "end an upstream subscription after this long without downstream subscribers")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (logs go to stderr)")
	fs.StringVar(&c.TrustAnchor, "trust-anchor", "", "CA certificate(s) (PEM): request client certificates (mTLS), verify them against it, and let only certified identities ANNOUNCE. Needs -cert and -key")
	fs.StringVar(&csPrefix, "cs-prefix", strings.Join(moqforward.DefaultPrefix, "/"), "with -trust-anchor: namespace prefix (elements separated by /) only -cs-identity may announce")
	fs.StringVar(&c.CSIdentity, "cs-identity", relay.DefaultCSIdentity, "with -trust-anchor: the coordination service's identity name")
	fs.BoolVar(&c.SubscribeNeedsCert, "subscribe-needs-cert", false, "with -trust-anchor: SUBSCRIBE needs a client certificate too")
	fs.Func("relay-identity", "with -trust-anchor: identity of a relay below this one that may announce on behalf of the publishers it authenticated (comma-separated, repeatable)", func(v string) error {
		for _, id := range strings.Split(v, ",") {
			if !identity.ValidName(id) {
				return fmt.Errorf("bad identity %q: want 1-%d of [A-Za-z0-9._-]", id, identity.MaxNameLen)
			}
			c.RelayIdentities = append(c.RelayIdentities, id)
		}
		return nil
	})
	fs.Func("upstream", "parent relay ADDR[=NS,NS...]: tracks nobody announced here are fetched from it, local announcements are forwarded to it; NS (elements joined by /) limits it to those namespaces (repeatable; space-separated in the environment)", func(v string) error {
		for _, f := range strings.Fields(v) {
			u, err := parseUpstream(f)
			if err != nil {
				return err
			}
			c.Upstreams = append(c.Upstreams, u)
		}
		return nil
	})
	fs.BoolVar(&c.UpstreamInsecure, "upstream-insecure", false, "do not verify upstream relays' certificates (development certificates only; without -trust-anchor)")
	set, err := cli.Parse(fs, args, envPrefix, synopsis, getenv)
	if err != nil {
		return c, err
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return c, errors.New("-cert and -key must be given together")
	}
	if c.LogLevel, err = cli.ParseLevel(logLevel); err != nil {
		return c, err
	}
	if c.QueueBytes < 0 || (c.QueueBytes > 0 && c.QueueBytes < c.MaxObjectSize) {
		return c, fmt.Errorf("bad -queue-bytes %d: want 0 (default) or at least -max-object-size (%d)", c.QueueBytes, c.MaxObjectSize)
	}
	if c.TrustAnchor != "" && c.UpstreamInsecure {
		return c, errors.New("-upstream-insecure contradicts -trust-anchor, which verifies upstream relays against the anchor")
	}
	if c.TrustAnchor == "" {
		// Authorization flags without an anchor would silently do nothing.
		for _, name := range []string{"cs-prefix", "cs-identity", "subscribe-needs-cert", "relay-identity"} {
			if set[name] {
				return c, fmt.Errorf("-%s needs -trust-anchor", name)
			}
		}
		return c, nil
	}
	if c.CertFile == "" {
		return c, errors.New("-trust-anchor needs -cert and -key: clients verify the relay against the same CA")
	}
	if !identity.ValidName(c.CSIdentity) {
		return c, fmt.Errorf("bad -cs-identity %q: want 1-%d of [A-Za-z0-9._-]", c.CSIdentity, identity.MaxNameLen)
	}
	p, err := parseNamespace(csPrefix)
	if err != nil {
		return c, fmt.Errorf("bad -cs-prefix %q: %w", csPrefix, err)
	}
	c.CSPrefix = p
	return c, nil
}

// parseNamespace splits "a/b/c" into namespace elements.
func parseNamespace(s string) ([]string, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	p := strings.Split(s, "/")
	if len(p) > 32 {
		return nil, fmt.Errorf("%d elements, at most 32", len(p))
	}
	for _, e := range p {
		if e == "" {
			return nil, errors.New("empty element")
		}
	}
	return p, nil
}

// parseUpstream parses ADDR[=NS,NS...].
func parseUpstream(v string) (relay.Upstream, error) {
	addr, list, hasNS := strings.Cut(v, "=")
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return relay.Upstream{}, fmt.Errorf("bad upstream address %q: %v", addr, err)
	}
	u := relay.Upstream{Addr: addr}
	if hasNS {
		for _, n := range strings.Split(list, ",") {
			ns, err := parseNamespace(n)
			if err != nil {
				return relay.Upstream{}, fmt.Errorf("bad upstream namespace %q: %w", n, err)
			}
			u.Namespaces = append(u.Namespaces, ns)
		}
	}
	return u, nil
}

// relayConfig loads the files cfg names.
func relayConfig(c Config, logger *slog.Logger) (relay.Config, error) {
	tlsConf, err := loadTLS(c.CertFile, c.KeyFile, c.Listen)
	if err != nil {
		return relay.Config{}, err
	}
	cfg := relay.Config{
		Addr:                 c.Listen,
		TLS:                  tlsConf,
		MaxObjectSize:        c.MaxObjectSize,
		SubscriberQueue:      c.Queue,
		SubscriberQueueBytes: c.QueueBytes,
		MaxDrops:             c.MaxDrops,
		IdleTimeout:          c.IdleTimeout,
		Logger:               logger,
		CSPrefix:             c.CSPrefix,
		CSIdentity:           c.CSIdentity,
		SubscribeNeedsCert:   c.SubscribeNeedsCert,
		RelayIdentities:      c.RelayIdentities,
		Upstreams:            c.Upstreams,
	}
	if c.TrustAnchor != "" {
		v, err := identity.LoadVerifier(c.TrustAnchor)
		if err != nil {
			return relay.Config{}, fmt.Errorf("-trust-anchor: %w", err)
		}
		cfg.TrustAnchor = v
		if len(c.Upstreams) > 0 {
			// Present our own certificate upstream (its identity must be in
			// the upstream's -relay-identity) and verify the upstream
			// against the same anchor.
			cert, err := identity.LoadCertificate(c.CertFile, c.KeyFile)
			if err != nil {
				return relay.Config{}, fmt.Errorf("-cert/-key as the upstream client certificate: %w", err)
			}
			cfg.UpstreamTLS = identity.ClientTLS(cert, v)
		}
	} else {
		cfg.CSPrefix, cfg.CSIdentity, cfg.SubscribeNeedsCert, cfg.RelayIdentities = nil, "", false, nil
		if len(c.Upstreams) > 0 {
			cfg.UpstreamTLS = &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: c.UpstreamInsecure}
			if c.CertFile != "" {
				cfg.UpstreamTLS.Certificates = tlsConf.Certificates
			}
		}
	}
	return cfg, nil
}

// run runs the relay until ctx ends. It logs to stderr; nothing goes to
// stdout.
func run(ctx context.Context, c Config, _, stderr io.Writer) error {
	logger := cli.NewLogger(stderr, c.LogLevel)
	cfg, err := relayConfig(c, logger)
	if err != nil {
		return err
	}
	if c.CertFile == "" {
		logger.Warn("using a self-signed development certificate; clients must skip verification. Pass -cert and -key in production")
	}
	for _, u := range cfg.Upstreams {
		logger.Info("upstream relay", "addr", u.Addr, "namespaces", len(u.Namespaces))
	}
	if cfg.TrustAnchor != nil {
		logger.Info("mTLS: only certified identities may announce", "relay_identities", strings.Join(cfg.RelayIdentities, ","), "cs_prefix", strings.Join(cfg.CSPrefix, "/"),
			"cs_identity", cfg.CSIdentity, "subscribe_needs_cert", cfg.SubscribeNeedsCert)
	}
	r, err := relay.New(cfg)
	if err != nil {
		return err
	}
	stopMetrics, err := serveMetrics(c.Metrics, r, logger)
	if err != nil {
		_ = r.Close()
		return err
	}
	logger.Info("relay listening", "addr", r.Addr().String())

	serveErr := make(chan error, 1)
	go func() { serveErr <- r.Serve(ctx) }()
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err = <-serveErr:
		if err != nil {
			logger.Error("relay stopped", "err", err)
		}
	}
	stopMetrics()
	if cerr := r.Close(); cerr != nil && err == nil {
		err = cerr
	}
	logger.Info("stopped")
	return err
}

// serveMetrics serves the relay's /metrics and /healthz on addr (empty:
// not served) until stop.
func serveMetrics(addr string, r *relay.Relay, logger *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener on %s: %w", addr, err)
	}
	logger.Info("metrics listening", "addr", ln.Addr().String())
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), r.Collector())
	return cli.Serve(ln, r.Handler(reg), logger), nil
}

func loadTLS(certFile, keyFile, listen string) (*tls.Config, error) {
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("loading -cert/-key: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}, nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		host = "localhost"
	}
	return moq.DevTLSConfig(host, "localhost", "127.0.0.1")
}
