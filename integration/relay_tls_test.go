package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/internal/devcert"
	"github.com/moqsframe/moqsframe/moq"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key as
// PEM files and returns their paths and a pool trusting it.
func writeCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	_, certPEM, keyPEM, err := devcert.New([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, pool
}

// The relay serves a given certificate (-cert/-key) that a verifying client
// accepts, and on SIGTERM with sessions still open it closes them and exits 0.
func TestRelayCertificateAndShutdownWithOpenSessions(t *testing.T) {
	certFile, keyFile, pool := writeCert(t)
	r := startRelay(t, "-cert", certFile, "-key", keyFile)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := &moq.Config{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	pubSess, err := moq.Dial(ctx, r.addr, cfg)
	if err != nil {
		t.Fatalf("dial with certificate verification: %v", err)
	}
	defer pubSess.Close()
	ns := []string{"tls"}
	if _, err := pubSess.Publish(ns, "t"); err != nil {
		t.Fatal(err)
	}
	if err := pubSess.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	subSess, err := moq.Dial(ctx, r.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer subSess.Close()
	sub, err := subSess.Subscribe(ctx, ns, "t")
	if err != nil {
		t.Fatal(err)
	}

	// A client that does not trust the certificate is refused.
	if _, err := moq.Dial(ctx, r.addr, &moq.Config{HandshakeTimeout: 3 * time.Second}); err == nil {
		t.Error("dial without trusting the relay certificate succeeded")
	}

	r.stop(t) // SIGTERM, expects exit 0
	select {
	case <-subSess.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber session still open after the relay shut down")
	}
	if _, err := sub.ReadObject(ctx); !errors.Is(err, moq.ErrSessionClosed) && !errors.Is(err, moq.ErrSubscriptionEnded) {
		t.Fatalf("ReadObject after relay shutdown: %v", err)
	}
}
