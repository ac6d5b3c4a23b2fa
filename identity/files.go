package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// CA is a deployment's certificate authority: it issues member, CS and
// relay certificates. ECDSA P-256, as MLS cipher suite 2 requires of the
// certificates it issues.
type CA struct {
	Certificate *x509.Certificate
	Key         *ecdsa.PrivateKey
}

// NewCA makes a self-signed CA named name, valid from now for validFor.
func NewCA(name string, validFor time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("identity: CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Certificate: cert, Key: key}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

// IssueOptions are the optional parts of a certificate.
type IssueOptions struct {
	// Hosts are DNS names and IP addresses for a server certificate (the CS
	// or a relay); empty for a member.
	Hosts []string
	// NotBefore and NotAfter bound the validity; zero: from a minute ago
	// for a year.
	NotBefore, NotAfter time.Time
}

// Issue makes a key pair and a certificate for name (URI SAN
// moqsframe:NAME), usable for signing, TLS client authentication and, with
// Hosts, TLS server authentication.
func (ca *CA) Issue(name string, o IssueOptions) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if !ValidName(name) {
		return nil, nil, fmt.Errorf("identity: invalid name %q: use 1-%d of [A-Za-z0-9._-]", name, MaxNameLen)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	nb, na := o.NotBefore, o.NotAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Minute)
	}
	if na.IsZero() {
		na = nb.Add(365 * 24 * time.Hour)
	}
	if !na.After(nb) {
		return nil, nil, errors.New("identity: NotAfter must be after NotBefore")
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{{Scheme: URIScheme, Opaque: name}},
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if len(o.Hosts) > 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Certificate, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: issue %q: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// WriteCA writes DIR/ca.pem (certificate, 0644) and DIR/ca.key (0600).
func (ca *CA) WriteCA(dir string) error {
	return writePair(dir, "ca", ca.Certificate, ca.Key)
}

// LoadCA reads DIR/ca.pem and DIR/ca.key written by WriteCA.
func LoadCA(dir string) (*CA, error) {
	c, err := LoadCertificate(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, err
	}
	if !c.Leaf.IsCA {
		return nil, fmt.Errorf("identity: %s is not a CA certificate", filepath.Join(dir, "ca.pem"))
	}
	return &CA{Certificate: c.Leaf, Key: c.Key}, nil
}

// WriteIdentity writes DIR/NAME.pem (certificate, 0644) and DIR/NAME.key
// (0600).
func WriteIdentity(dir, name string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	if !ValidName(name) {
		return fmt.Errorf("identity: invalid name %q", name)
	}
	return writePair(dir, name, cert, key)
}

func writePair(dir, base string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// The key first, with O_EXCL: an existing key is never overwritten.
	kf := filepath.Join(dir, base+".key")
	f, err := os.OpenFile(kf, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("identity: %w (remove it first to issue a new key)", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}); err != nil {
		f.Close()
		return fmt.Errorf("identity: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	cf := filepath.Join(dir, base+".pem")
	if err := os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	return nil
}

// Certificate is a loaded certificate chain with its ECDSA key.
type Certificate struct {
	Chain [][]byte // DER, leaf first
	Leaf  *x509.Certificate
	Key   *ecdsa.PrivateKey
}

// TLS returns the pair as a tls.Certificate.
func (c *Certificate) TLS() tls.Certificate {
	return tls.Certificate{Certificate: c.Chain, PrivateKey: c.Key, Leaf: c.Leaf}
}

// LoadCertificate reads a PEM certificate file (leaf first, then any
// intermediates) and its PEM private key (PKCS#8 or SEC1, ECDSA P-256).
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	cp, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	kp, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	pair, err := tls.X509KeyPair(cp, kp)
	if err != nil {
		return nil, fmt.Errorf("identity: %s and %s: %w", certFile, keyFile, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("identity: %s: want an ECDSA P-256 key (MLS cipher suite 2)", keyFile)
	}
	return &Certificate{Chain: pair.Certificate, Leaf: pair.Leaf, Key: key}, nil
}

// LoadTrustAnchors reads every CERTIFICATE block of a PEM file.
func LoadTrustAnchors(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: trust anchors: %w", err)
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("identity: trust anchors %s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("identity: trust anchors %s: no PEM certificate", path)
	}
	return out, nil
}

// LoadVerifier is NewVerifier over the anchors of a PEM file.
func LoadVerifier(path string, opts ...VerifierOption) (*Verifier, error) {
	a, err := LoadTrustAnchors(path)
	if err != nil {
		return nil, err
	}
	return NewVerifier(a, opts...)
}
