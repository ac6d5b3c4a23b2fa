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
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/moqsframe/moqsframe/moq"
	"github.com/moqsframe/moqsframe/relay"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "moq-relay:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:4443", "UDP address for MoQ over QUIC")
	certFile := flag.String("cert", "", "TLS certificate (PEM); with -key. Without both, a self-signed dev certificate is generated")
	keyFile := flag.String("key", "", "TLS private key (PEM)")
	metrics := flag.String("metrics", "127.0.0.1:9090", "HTTP address for /metrics and /healthz (empty: disabled)")
	maxObject := flag.Int("max-object-size", moq.DefaultMaxObjectSize, "largest object payload in bytes, both directions")
	queue := flag.Int("queue", moq.DefaultSubscriberQueue, "per-subscriber queue length in objects")
	maxDrops := flag.Int("max-drops", 1000, "disconnect a subscriber after this many dropped objects (-1: never)")
	idle := flag.Duration("idle-timeout", 10*time.Second, "end an upstream subscription after this long without downstream subscribers")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("bad -log-level %q: %w", *logLevel, err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	tlsConf, err := loadTLS(*certFile, *keyFile, *listen)
	if err != nil {
		return err
	}
	if *certFile == "" {
		logger.Warn("using a self-signed development certificate; clients must skip verification. Pass -cert and -key in production")
	}
	r, err := relay.New(relay.Config{
		Addr:            *listen,
		TLS:             tlsConf,
		MaxObjectSize:   *maxObject,
		SubscriberQueue: *queue,
		MaxDrops:        *maxDrops,
		IdleTimeout:     *idle,
		Logger:          logger,
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var srv *http.Server
	if *metrics != "" {
		ln, err := net.Listen("tcp", *metrics)
		if err != nil {
			_ = r.Close()
			return fmt.Errorf("metrics listener on %s: %w", *metrics, err)
		}
		srv = &http.Server{Handler: r.Handler(), ReadHeaderTimeout: 5 * time.Second}
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
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("-cert and -key must be given together")
	}
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
