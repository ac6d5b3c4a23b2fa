package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func mustCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func sigKey(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	e, err := k.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	return e.Bytes()
}

// selfIssued makes a certificate from tmpl signed by signer (itself when nil).
func selfIssued(t *testing.T, tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl.SerialNumber = serial()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func TestVerify(t *testing.T) {
	ca, other := mustCA(t), mustCA(t)
	v, err := NewVerifier([]*x509.Certificate{ca.Certificate})
	if err != nil {
		t.Fatal(err)
	}
	good, goodKey, err := ca.Issue("alice", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, foreignKey, _ := ca.Issue("mallory", IssueOptions{})
	fromOther, otherKey, _ := other.Issue("alice", IssueOptions{})
	expired, expiredKey, _ := ca.Issue("alice", IssueOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	now := time.Now()
	self, selfKey := selfIssued(t, &x509.Certificate{Subject: pkix.Name{CommonName: "alice"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{{Scheme: URIScheme, Opaque: "alice"}}})

	// A certificate without the identity SAN, and one only for servers.
	issue := func(mod func(*x509.Certificate)) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "x"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{{Scheme: URIScheme, Opaque: "alice"}}}
		mod(tmpl)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Certificate, &key.PublicKey, ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, key
	}
	noName, noNameKey := issue(func(c *x509.Certificate) { c.URIs = nil })
	twoNames, twoKey := issue(func(c *x509.Certificate) {
		c.URIs = append(c.URIs, &url.URL{Scheme: URIScheme, Opaque: "bob"})
	})
	badName, badKey := issue(func(c *x509.Certificate) { c.URIs = []*url.URL{{Scheme: URIScheme, Opaque: "a/b"}} })
	serverOnly, serverKey := issue(func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })
	noSign, noSignKey := issue(func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment })

	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		key  []byte
		want error
	}{
		{"valid", good, sigKey(t, goodKey), nil},
		{"valid without key check", good, nil, nil},
		{"other CA", fromOther, sigKey(t, otherKey), ErrUntrusted},
		{"self-signed", self, sigKey(t, selfKey), ErrUntrusted},
		{"expired", expired, sigKey(t, expiredKey), ErrExpired},
		{"no name", noName, sigKey(t, noNameKey), ErrNoName},
		{"two names", twoNames, sigKey(t, twoKey), ErrNoName},
		{"invalid name", badName, sigKey(t, badKey), ErrNoName},
		{"server only", serverOnly, sigKey(t, serverKey), ErrKeyUsage},
		{"no digitalSignature", noSign, sigKey(t, noSignKey), ErrKeyUsage},
		{"key mismatch", good, sigKey(t, foreignKey), ErrKeyMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Verify([][]byte{tc.cert.Raw}, tc.key)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if tc.want == nil && (id.Name != "alice" || id.Certificate != nil && id.FingerprintHex() == "") {
				t.Fatalf("identity %+v", id)
			}
		})
	}
	if _, err := v.Verify([][]byte{{1, 2, 3}}, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage: %v", err)
	}
	if _, err := v.Verify(nil, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty: %v", err)
	}
	// The clock is the verifier's: a valid certificate is expired tomorrow next year.
	late, _ := NewVerifier([]*x509.Certificate{ca.Certificate}, WithClock(func() time.Time { return now.Add(400 * 24 * time.Hour) }))
	if _, err := late.Verify([][]byte{good.Raw}, nil); !errors.Is(err, ErrExpired) {
		t.Fatalf("late clock: %v", err)
	}
}

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{"alice": true, "a.b_c-1": true, "": false, ".x": false, "-x": false,
		"a/b": false, "a b": false, "ä": false, string(make([]byte, 65)): false, "A0": true} {
		if ValidName(s) != want {
			t.Errorf("ValidName(%q) = %v", s, !want)
		}
	}
}

func TestPolicy(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"groups": {"room": ["alice", "bob"], "lobby": ["*"]}, "max_members": 7}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		group, name string
		want        bool
	}{{"room", "alice", true}, {"room", "bob", true}, {"room", "mallory", false},
		{"lobby", "mallory", true}, {"other", "alice", false}} {
		if got := p.Admits(tc.group, tc.name); got != tc.want {
			t.Errorf("Admits(%q, %q) = %v", tc.group, tc.name, got)
		}
	}
	if err := p.Check("room", "mallory"); !errors.Is(err, ErrNotAdmitted) {
		t.Fatalf("Check: %v", err)
	}
	if p.MaxMembers("room") != 2 || p.MaxMembers("lobby") != 7 || p.MaxMembers("other") != 0 {
		t.Fatalf("MaxMembers %d %d %d", p.MaxMembers("room"), p.MaxMembers("lobby"), p.MaxMembers("other"))
	}
	for _, bad := range []string{``, `{}`, `{"groups": {}}`, `{"groups": {"r": []}}`, `{"groups": {"r": ["a b"]}}`,
		`{"groups": {"r": ["a"]}, "extra": 1}`, `{"groups": {"r": ["a"]}, "max_members": -1}`, `[`} {
		if _, err := ParsePolicy([]byte(bad)); err == nil {
			t.Errorf("ParsePolicy(%q) accepted", bad)
		}
	}
}

func TestFilesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t)
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(dir); err == nil {
		t.Fatal("WriteCA overwrote an existing key")
	}
	ca2, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca2.Issue("bob", IssueOptions{Hosts: []string{"localhost", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteIdentity(dir, "bob", cert, key); err != nil {
		t.Fatal(err)
	}
	for f, mode := range map[string]os.FileMode{"ca.key": 0o600, "bob.key": 0o600, "ca.pem": 0o644, "bob.pem": 0o644} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", f, st.Mode().Perm(), mode)
		}
	}
	c, err := LoadCertificate(filepath.Join(dir, "bob.pem"), filepath.Join(dir, "bob.key"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(c.Chain, sigKey(t, c.Key))
	if err != nil || id.Name != "bob" {
		t.Fatalf("Verify = %+v, %v", id, err)
	}
	if _, err := LoadTrustAnchors(filepath.Join(dir, "bob.key")); err == nil {
		t.Fatal("a key file loaded as trust anchors")
	}
}

// TestMutualTLS: a client with a certificate of the CA gets through and is
// named; one from another CA, and one without a certificate, fail the
// handshake.
func TestMutualTLS(t *testing.T) {
	ca, other := mustCA(t), mustCA(t)
	v, _ := NewVerifier([]*x509.Certificate{ca.Certificate})
	issue := func(ca *CA, name string, hosts ...string) *Certificate {
		c, k, err := ca.Issue(name, IssueOptions{Hosts: hosts})
		if err != nil {
			t.Fatal(err)
		}
		return &Certificate{Chain: [][]byte{c.Raw}, Leaf: c, Key: k}
	}
	server := issue(ca, "cs", "127.0.0.1")
	var refusedMu sync.Mutex
	var refused []error
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerTLS(server, v, func(err error) {
		refusedMu.Lock()
		refused = append(refused, err)
		refusedMu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	names := make(chan string, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err != nil {
				names <- "refused"
			} else {
				st := tc.ConnectionState()
				id, _ := v.Peer(&st)
				names <- id.Name
			}
			c.Close()
		}
	}()
	dial := func(cert *Certificate) error {
		cfg := ClientTLS(cert, v)
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		// TLS 1.3 reports a client-certificate refusal on the first read.
		_, err = conn.Read(make([]byte, 1))
		return err
	}
	_ = dial(issue(ca, "alice"))
	if n := <-names; n != "alice" {
		t.Fatalf("peer = %q, want alice", n)
	}
	_ = dial(issue(other, "alice"))
	if n := <-names; n != "refused" {
		t.Fatalf("other CA: %q", n)
	}
	_ = dial(nil)
	if n := <-names; n != "refused" {
		t.Fatalf("no certificate: %q", n)
	}
	if _, err := Peer(&tls.ConnectionState{}); !errors.Is(err, ErrNoPeerCertificate) {
		t.Fatal(err)
	}
	if _, err := v.Peer(&tls.ConnectionState{}); !errors.Is(err, ErrNoPeerCertificate) {
		t.Fatal(err)
	}
	// Both refusals were reported: the other CA's certificate, and none.
	refusedMu.Lock()
	defer refusedMu.Unlock()
	if len(refused) != 2 || !errors.Is(refused[0], ErrUntrusted) || !errors.Is(refused[1], ErrNoPeerCertificate) {
		t.Fatalf("refusals reported: %v", refused)
	}
}
