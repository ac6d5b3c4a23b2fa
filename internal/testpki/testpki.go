// Package testpki makes a deployment's certificates for tests: a CA, a
// verifier that trusts it, and member certificates issued by it.
package testpki

import (
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/identity"
)

// PKI is a test CA and a verifier trusting it.
type PKI struct {
	CA       *identity.CA
	Verifier *identity.Verifier
}

// New makes a CA valid for a day. It panics if key generation fails,
// which crypto/rand does not.
func New() *PKI {
	ca, err := identity.NewCA("moqsframe test CA", 24*time.Hour)
	if err != nil {
		panic(err)
	}
	v, err := identity.NewVerifier([]*x509.Certificate{ca.Certificate})
	if err != nil {
		panic(err)
	}
	return &PKI{CA: ca, Verifier: v}
}

// Issue makes a certificate for name, with o's hosts and validity.
func (p *PKI) Issue(tb testing.TB, name string, o ...identity.IssueOptions) *identity.Certificate {
	tb.Helper()
	var opts identity.IssueOptions
	if len(o) > 0 {
		opts = o[0]
	}
	c, k, err := p.CA.Issue(name, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return &identity.Certificate{Chain: [][]byte{c.Raw}, Leaf: c, Key: k}
}

// Files writes a fresh CA and a certificate for name into dir, as
// sframe identity would: dir/ca.pem, dir/NAME.pem and dir/NAME.key.
func Files(tb testing.TB, dir, name string) (caFile, certFile, keyFile string) {
	tb.Helper()
	p := New()
	c, k, err := p.CA.Issue(name, identity.IssueOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.CA.WriteCA(dir); err != nil {
		tb.Fatal(err)
	}
	if err := identity.WriteIdentity(dir, name, c, k); err != nil {
		tb.Fatal(err)
	}
	return filepath.Join(dir, "ca.pem"), filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
}
