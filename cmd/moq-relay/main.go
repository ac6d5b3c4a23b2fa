// Command moq-relay runs the MoQ (draft-11, raw QUIC, ALPN moq-00) relay.
// It only parses flags and wires the relay package to an HTTP metrics
// endpoint; see docs/relay.md.
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
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/moqsframe/moqsframe/coord/moqforward"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/moq"
	"github.com/moqsframe/moqsframe/relay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "moq-relay:", err)
		os.Exit(1)
	}
}

// options are the parsed command-line flags.
type options struct {
	listen, certFile, keyFile, metrics, logLevel string
	maxObject, queue, maxDrops                   int
	idle                                         time.Duration

	trustAnchor        string
	csPrefix           []string
	csIdentity         string
	subscribeNeedsCert bool
}

// parseFlags parses args (without the program name). Errors are for the
// user: they name the flag.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("moq-relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:4443", "UDP address for MoQ over QUIC")
	fs.StringVar(&o.certFile, "cert", "", "TLS certificate (PEM); with -key. Without both, a self-signed dev certificate is generated")
	fs.StringVar(&o.keyFile, "key", "", "TLS private key (PEM)")
	fs.StringVar(&o.metrics, "metrics", "127.0.0.1:9090", "HTTP address for /metrics and /healthz (empty: disabled)")
	fs.IntVar(&o.maxObject, "max-object-size", moq.DefaultMaxObjectSize, "largest object payload in bytes, both directions")
	fs.IntVar(&o.queue, "queue", moq.DefaultSubscriberQueue, "per-subscriber queue length in objects")
	fs.IntVar(&o.maxDrops, "max-drops", 1000, "disconnect a subscriber after this many dropped objects (-1: never)")
	fs.DurationVar(&o.idle, "idle-timeout", 10*time.Second, "end an upstream subscription after this long without downstream subscribers")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.trustAnchor, "trust-anchor", "", "CA certificate(s) (PEM): request client certificates (mTLS), verify them against it, and let only certified identities ANNOUNCE. Needs -cert and -key")
	csPrefix := fs.String("cs-prefix", strings.Join(moqforward.DefaultPrefix, "/"), "with -trust-anchor: namespace prefix (elements separated by /) only -cs-identity may announce")
	fs.StringVar(&o.csIdentity, "cs-identity", relay.DefaultCSIdentity, "with -trust-anchor: the coordination service's identity name")
	fs.BoolVar(&o.subscribeNeedsCert, "subscribe-needs-cert", false, "with -trust-anchor: SUBSCRIBE needs a client certificate too")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if (o.certFile == "") != (o.keyFile == "") {
		return o, errors.New("-cert and -key must be given together")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return o, fmt.Errorf("bad -log-level %q: %w", o.logLevel, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.trustAnchor == "" {
		// Authorization flags without an anchor would silently do nothing.
		for _, name := range []string{"cs-prefix", "cs-identity", "subscribe-needs-cert"} {
			if set[name] {
				return o, fmt.Errorf("-%s needs -trust-anchor", name)
			}
		}
		return o, nil
	}
	if o.certFile == "" {
		return o, errors.New("-trust-anchor needs -cert and -key: clients verify the relay against the same CA")
	}
	if !identity.ValidName(o.csIdentity) {
		return o, fmt.Errorf("bad -cs-identity %q: want 1-%d of [A-Za-z0-9._-]", o.csIdentity, identity.MaxNameLen)
	}
	p, err := parseNamespace(*csPrefix)
	if err != nil {
		return o, fmt.Errorf("bad -cs-prefix %q: %w", *csPrefix, err)
	}
	o.csPrefix = p
	return o, nil
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

// relayConfig loads the files the options name.
func (o options) relayConfig(logger *slog.Logger) (relay.Config, error) {
	tlsConf, err := loadTLS(o.certFile, o.keyFile, o.listen)
	if err != nil {
		return relay.Config{}, err
	}
	cfg := relay.Config{
		Addr:               o.listen,
		TLS:                tlsConf,
		MaxObjectSize:      o.maxObject,
		SubscriberQueue:    o.queue,
		MaxDrops:           o.maxDrops,
		IdleTimeout:        o.idle,
		Logger:             logger,
		CSPrefix:           o.csPrefix,
		CSIdentity:         o.csIdentity,
		SubscribeNeedsCert: o.subscribeNeedsCert,
	}
	if o.trustAnchor != "" {
		v, err := identity.LoadVerifier(o.trustAnchor)
		if err != nil {
			return relay.Config{}, fmt.Errorf("-trust-anchor: %w", err)
		}
		cfg.TrustAnchor = v
	} else {
		cfg.CSPrefix, cfg.CSIdentity = nil, ""
	}
	return cfg, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(o.logLevel)) // checked by parseFlags
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	cfg, err := o.relayConfig(logger)
	if err != nil {
		return err
	}
	if o.certFile == "" {
		logger.Warn("using a self-signed development certificate; clients must skip verification. Pass -cert and -key in production")
	}
	if cfg.TrustAnchor != nil {
		logger.Info("mTLS: only certified identities may announce", "cs_prefix", strings.Join(cfg.CSPrefix, "/"),
			"cs_identity", cfg.CSIdentity, "subscribe_needs_cert", cfg.SubscribeNeedsCert)
	}
	r, err := relay.New(cfg)
	if err != nil {
		return err
	}

	var srv *http.Server
	if o.metrics != "" {
		ln, err := net.Listen("tcp", o.metrics)
		if err != nil {
			_ = r.Close()
			return fmt.Errorf("metrics listener on %s: %w", o.metrics, err)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), r.Collector())
		srv = &http.Server{Handler: r.Handler(reg), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("metrics server failed", "err", err)
			}
		}()
		logger.Info("metrics listening", "addr", ln.Addr().String())
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
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	if cerr := r.Close(); cerr != nil && err == nil {
		err = cerr
	}
	logger.Info("stopped")
	return err
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
