package devcert

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"
)

func TestCertificateVerifiesForItsHosts(t *testing.T) {
	cert, certPEM, keyPEM, err := New([]string{"127.0.0.1", "example.test"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("PEM pair: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	for _, host := range []string{"127.0.0.1", "example.test"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.test"}); err == nil {
		t.Error("verified for a host it was not made for")
	}
}
