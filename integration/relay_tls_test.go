package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/moq"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key as
// PEM files and returns their paths and a pool trusting it.
func writeCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: "relay test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
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
