// Package identity is who a security-group member is: an X.509 certificate
// (RFC 9420 §5.3 X509Credential) chained to a deployment's trust anchors,
// naming the member in a URI subject alternative name, and the admission
// policy that says which names may be in which group.
//
// A member's identity is NAME in the certificate's one URI SAN of the form
// "moqsframe:NAME" (URIScheme), where NAME is 1–64 characters of
// [A-Za-z0-9._-] (ValidName). The same certificate authenticates the member
// to MLS (its leaf's credential), to the coordination service and to the
// relay (TLS client certificate), so every party derives the same name from
// it with Name.
//
// Verification (Verifier.Verify) checks the chain up to an anchor, the
// validity period, the key usages (digitalSignature; extended key usage
// clientAuth) and, for an MLS leaf, that the certificate's public key is the
// leaf's signature key (RFC 9420 §5.3: "MUST be identical"). See
// docs/security.md.
package identity

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// URIScheme is the scheme of the URI SAN that carries a member's name.
const URIScheme = "moqsframe"

// MaxNameLen bounds a name, so that it fits in logs, file names and URLs.
const MaxNameLen = 64

// Errors of Verify and Name. Each wraps the crypto/x509 error where there is
// one; test with errors.Is.
var (
	// ErrMalformed: a certificate does not parse.
	ErrMalformed = errors.New("identity: certificate does not parse")
	// ErrNoName: the certificate has no URI SAN "moqsframe:NAME", more than
	// one, or NAME is not a valid name. Issue it with `sframe identity issue`.
	ErrNoName = errors.New("identity: certificate names no identity (want one URI SAN moqsframe:NAME)")
	// ErrUntrusted: the chain does not lead to a configured trust anchor
	// (self-signed, or issued by another CA).
	ErrUntrusted = errors.New("identity: certificate is not issued by a trusted CA")
	// ErrExpired: now is outside a certificate's validity period.
	ErrExpired = errors.New("identity: certificate is expired or not yet valid")
	// ErrKeyUsage: the leaf lacks digitalSignature or the clientAuth
	// extended key usage.
	ErrKeyUsage = errors.New("identity: certificate is not for client authentication and signing")
	// ErrKeyMismatch: the certificate's public key is not the MLS leaf's
	// signature key (RFC 9420 §5.3).
	ErrKeyMismatch = errors.New("identity: certificate key is not the MLS signature key")
	// ErrNotAdmitted: the policy does not admit the name to the group.
	ErrNotAdmitted = errors.New("identity: not admitted to the group by the policy")
)

// Identity is a verified member identity.
type Identity struct {
	Name string
	// Fingerprint is SHA-256 of the leaf certificate's DER.
	Fingerprint [sha256.Size]byte
	Certificate *x509.Certificate
}

// FingerprintHex is the fingerprint in lower-case hex, for logs and rosters.
func (id Identity) FingerprintHex() string { return hex.EncodeToString(id.Fingerprint[:]) }

// ValidName reports whether s can be a member name: 1–MaxNameLen bytes of
// [A-Za-z0-9._-], not starting with '.' or '-'.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Name returns the member name a certificate carries, or ErrNoName.
func Name(cert *x509.Certificate) (string, error) {
	name := ""
	for _, u := range cert.URIs {
		if u.Scheme != URIScheme {
			continue
		}
		if name != "" || u.Opaque == "" || !ValidName(u.Opaque) {
			return "", ErrNoName
		}
		name = u.Opaque
	}
	if name == "" {
		return "", ErrNoName
	}
	return name, nil
}

// Verifier checks certificates against a deployment's trust anchors.
// The zero value is not usable; create one with NewVerifier.
type Verifier struct {
	roots *x509.CertPool
	now   func() time.Time
}

// VerifierOption configures NewVerifier.
type VerifierOption func(*Verifier)

// WithClock sets the clock used for validity periods (default time.Now).
func WithClock(now func() time.Time) VerifierOption { return func(v *Verifier) { v.now = now } }

// NewVerifier trusts the given anchors (CA certificates; at least one).
func NewVerifier(anchors []*x509.Certificate, opts ...VerifierOption) (*Verifier, error) {
	if len(anchors) == 0 {
		return nil, errors.New("identity: no trust anchor; give the deployment's CA certificate (ca.pem)")
	}
	v := &Verifier{roots: x509.NewCertPool(), now: time.Now}
	for _, a := range anchors {
		v.roots.AddCert(a)
	}
	for _, o := range opts {
		o(v)
	}
	return v, nil
}

// Now is the verifier's clock.
func (v *Verifier) Now() time.Time { return v.now() }

// Roots is the anchor pool, for tls.Config.ClientCAs and RootCAs.
func (v *Verifier) Roots() *x509.CertPool { return v.roots }

// Verify checks chain (DER, leaf first, then intermediates) and returns the
// leaf's identity. If sigKey is non-nil it must be the leaf's public key as
// MLS encodes a signature key (uncompressed P-256 point, or Ed25519 key).
// Errors: ErrMalformed, ErrUntrusted, ErrExpired, ErrKeyUsage, ErrNoName,
// ErrKeyMismatch.
func (v *Verifier) Verify(chain [][]byte, sigKey []byte) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, fmt.Errorf("%w: empty chain", ErrMalformed)
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		certs[i] = c
	}
	return v.VerifyCertificates(certs, sigKey)
}

// VerifyCertificates is Verify on parsed certificates.
func (v *Verifier) VerifyCertificates(certs []*x509.Certificate, sigKey []byte) (Identity, error) {
	if len(certs) == 0 {
		return Identity{}, fmt.Errorf("%w: empty chain", ErrMalformed)
	}
	leaf := certs[0]
	now := v.now()
	// Checked first and separately so that the error says which it is;
	// crypto/x509 would report either as a chain failure.
	for _, c := range certs {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return Identity{}, fmt.Errorf("%w: %q valid %s to %s", ErrExpired, c.Subject.CommonName,
				c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return Identity{}, fmt.Errorf("%w: no digitalSignature key usage", ErrKeyUsage)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	// KeyUsages must be set: left empty, crypto/x509 requires serverAuth.
	opts := x509.VerifyOptions{Roots: v.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := leaf.Verify(opts); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage {
			return Identity{}, fmt.Errorf("%w: %v", ErrKeyUsage, err)
		}
		return Identity{}, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	name, err := Name(leaf)
	if err != nil {
		return Identity{}, err
	}
	if sigKey != nil {
		pub, err := signatureKey(leaf)
		if err != nil {
			return Identity{}, err
		}
		if subtle.ConstantTimeCompare(pub, sigKey) != 1 {
			return Identity{}, ErrKeyMismatch
		}
	}
	return Identity{Name: name, Fingerprint: sha256.Sum256(leaf.Raw), Certificate: leaf}, nil
}

// signatureKey encodes a certificate's public key the way an MLS LeafNode
// carries its signature_key: the uncompressed point for ECDSA (RFC 9420
// §5.1.1, SEC1), the raw key for Ed25519.
func signatureKey(c *x509.Certificate) ([]byte, error) {
	switch pub := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		k, err := pub.ECDH()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKeyMismatch, err)
		}
		return k.Bytes(), nil
	case ed25519.PublicKey:
		return pub, nil
	case *ecdh.PublicKey:
		return pub.Bytes(), nil
	}
	return nil, fmt.Errorf("%w: unsupported key type %T", ErrKeyMismatch, c.PublicKey)
}
