package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/cmd/internal/cli"
	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/identity"
	mls "github.com/thomas-vilte/mls-go"
	"github.com/thomas-vilte/mls-go/ciphersuite"
)

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs the command with a dev certificate and returns an HTTPS client
// trusting it, the base URL, and a function that sends SIGTERM and waits.
func start(t *testing.T, db string) (*http.Client, string, func() string) {
	t.Helper()
	addr := freeAddr(t)
	certOut := filepath.Join(t.TempDir(), "cert.pem")
	return startArgs(t, addr, []string{"-db", db, "-listen", addr, "-dev-cert", "-dev-cert-out", certOut}, func() *http.Client {
		pemBytes, err := os.ReadFile(certOut)
		pool := x509.NewCertPool()
		if err != nil || !pool.AppendCertsFromPEM(pemBytes) {
			return nil
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	})
}

// startArgs runs the command with args and waits until GET /healthz with
// the client from mkClient (nil: not yet) answers 200.
func startArgs(t *testing.T, addr string, args []string, mkClient func() *http.Client) (*http.Client, string, func() string) {
	t.Helper()
	logs := &syncBuf{}
	cfg, err := parseFlags(args, env())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, cfg, io.Discard, logs)
	}()
	var hc *http.Client
	base := "https://localhost:" + strings.Split(addr, ":")[1]
	deadline := time.Now().Add(10 * time.Second)
	for {
		if hc = mkClient(); hc != nil {
			if resp, err := hc.Get(base + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
		}
		select {
		case err := <-done:
			t.Fatalf("sframe-cs exited early: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sframe-cs did not become healthy:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop := func() string {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("sframe-cs exit: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("sframe-cs did not stop when its context ended")
		}
		return logs.String()
	}
	return hc, base, stop
}

func TestServeJoinMetricsShutdownRestart(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "cs.db")
	hc, base, stop := start(t, db)
	cl, err := coord.NewClient(base, hc)
	if err != nil {
		t.Fatal(err)
	}
	kp := append([]byte{0, 1, 0, 1}, "kp-A"...)
	if created, err := cl.Join(ctx, "room", kp); err != nil || !created {
		t.Fatalf("join: created=%v err=%v", created, err)
	}
	if created, err := cl.Join(ctx, "room", append([]byte{0, 1, 0, 1}, "kp-B"...)); err != nil || created {
		t.Fatalf("second join: created=%v err=%v", created, err)
	}
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"sframe_cs_groups_created_total 1",
		`sframe_cs_http_responses_total{code="201",endpoint="requests"} 1`,
		`sframe_cs_http_responses_total{code="200",endpoint="requests"} 1`,
		"sframe_cs_forwarded_total 1",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	logs := stop()
	if !strings.Contains(logs, "shutting down") {
		t.Errorf("no shutdown log:\n%s", logs)
	}
	if strings.Contains(logs, "kp-B") {
		t.Error("payload bytes appeared in the logs")
	}

	// Restart on the same database: the group and its epoch survive.
	hc, base, stop = start(t, db)
	defer stop()
	cl, _ = coord.NewClient(base, hc)
	if e, err := cl.Epoch(ctx, "room"); err != nil || e != 0 {
		t.Fatalf("epoch after restart: %d, %v", e, err)
	}
	if created, err := cl.Join(ctx, "room", kp); err != nil || !created {
		t.Fatalf("creator retry after restart: created=%v err=%v", created, err)
	}
}

// env is a getenv over a map.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParseFlags(t *testing.T) {
	auth := []string{"-trust-anchor", "ca.pem", "-cert", "c.pem", "-key", "c.key"}
	cases := []struct {
		name    string
		args    []string
		env     func(string) string
		wantErr string
		check   func(Config) bool
	}{
		{name: "no certificate", args: []string{}, wantErr: "HTTPS needs a certificate"},
		{name: "two modes", args: []string{"-dev-cert", "-insecure-http"}, wantErr: "choose one of"},
		{name: "tls-cert alone", args: []string{"-tls-cert", "x.pem"}, wantErr: "-tls-cert and -tls-key must be given together"},
		{name: "anchor without cert", args: []string{"-trust-anchor", "ca.pem", "-policy", "p.json"}, wantErr: "-trust-anchor needs -cert and -key"},
		{name: "anchor without policy", args: auth, wantErr: "exactly one of -policy FILE or -policy-allow-all"},
		{name: "both policies", args: append([]string{"-policy", "p.json", "-policy-allow-all"}, auth...), wantErr: "exactly one of -policy"},
		{name: "anchor and dev cert", args: append([]string{"-policy-allow-all", "-dev-cert"}, auth...), wantErr: "choose one of"},
		{name: "zero rate", args: append([]string{"-policy-allow-all", "-rate", "0"}, auth...), wantErr: "must be positive"},
		{name: "policy without anchor", args: []string{"-dev-cert", "-policy", "p.json"}, wantErr: "need -trust-anchor"},
		{name: "relay-ca and insecure", args: []string{"-dev-cert", "-relay-ca", "ca.pem", "-insecure"}, wantErr: "exclude each other"},
		{name: "bad duration", args: []string{"-dev-cert", "-redeliver-every", "often"}, wantErr: `invalid value "often" for flag -redeliver-every`},
		{name: "bad log level", args: []string{"-dev-cert", "-log-level", "loud"}, wantErr: "bad -log-level"},
		{name: "unknown flag", args: []string{"-no-such-flag"}, wantErr: "flag provided but not defined"},
		{name: "stray argument", args: []string{"-dev-cert", "stray"}, wantErr: `unexpected argument "stray"`},
		{name: "bad env", env: env("SFRAME_CS_DEV_CERT", "yes please"), wantErr: `bad $SFRAME_CS_DEV_CERT "yes please"`},
		{name: "bad env duration", args: []string{"-dev-cert"}, env: env("SFRAME_CS_PENDING_JOIN_TTL", "forever"), wantErr: "$SFRAME_CS_PENDING_JOIN_TTL"},
		{name: "defaults", args: []string{"-dev-cert"}, check: func(c Config) bool {
			return c.Listen == "127.0.0.1:8443" && c.DB == "sframe-cs.db" && c.LogLevel == slog.LevelInfo && c.RedeliverEvery == 5*time.Second &&
				len(c.DevCertHosts) == 3 && strings.Join(c.NamespacePrefix, "/") == "moqsframe/cs" && c.Rate == coord.DefaultRate
		}},
		{name: "env overrides default", args: []string{"-dev-cert"},
			env: env("SFRAME_CS_LISTEN", "0.0.0.0:443", "SFRAME_CS_REDELIVER_EVERY", "1s", "SFRAME_CS_NAMESPACE_PREFIX", "/a/b/", "SFRAME_CS_LOG_LEVEL", "error"),
			check: func(c Config) bool {
				return c.Listen == "0.0.0.0:443" && c.RedeliverEvery == time.Second && strings.Join(c.NamespacePrefix, "/") == "a/b" && c.LogLevel == slog.LevelError
			}},
		{name: "flag wins over env", args: []string{"-dev-cert", "-db", "flag.db"}, env: env("SFRAME_CS_DB", "env.db"),
			check: func(c Config) bool { return c.DB == "flag.db" }},
		{name: "mode from env", env: env("SFRAME_CS_TRUST_ANCHOR", "ca.pem", "SFRAME_CS_CERT", "c.pem", "SFRAME_CS_KEY", "c.key", "SFRAME_CS_POLICY_ALLOW_ALL", "true"),
			check: func(c Config) bool { return c.TrustAnchor == "ca.pem" && c.PolicyAllowAll }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := tc.env
			if getenv == nil {
				getenv = env()
			}
			c, err := parseFlags(tc.args, getenv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("want error containing %q, got %v", tc.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("config %+v", c)
			}
		})
	}
}

func TestHelpAndExitCodes(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := cli.Exit(context.Background(), "sframe-cs", []string{"-h"}, env(), &stdout, &stderr, parseFlags, run); code != 0 || stderr.Len() != 0 ||
		!strings.Contains(stdout.String(), "usage: sframe-cs") || !strings.Contains(stdout.String(), "[$SFRAME_CS_TRUST_ANCHOR]") {
		t.Fatalf("-h: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := cli.Exit(context.Background(), "sframe-cs", nil, env(), &stdout, &stderr, parseFlags, run); code != 2 || stdout.Len() != 0 ||
		strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "sframe-cs -h") {
		t.Fatalf("no flags: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	stderr.Reset()
	// A run error (a missing -tls-cert) exits 1.
	db := filepath.Join(t.TempDir(), "cs.db")
	if code := cli.Exit(context.Background(), "sframe-cs", []string{"-db", db, "-tls-cert", "missing.pem", "-tls-key", "missing.key"}, env(), &stdout, &stderr, parseFlags, run); code != 1 ||
		!strings.Contains(stderr.String(), "loading -tls-cert/-tls-key") {
		t.Fatalf("run error: exit %d, stderr %q", code, stderr.String())
	}
}

// The authenticated mode: mutual TLS with the deployment CA, the policy,
// refusals in /metrics.
func TestAuthenticatedMode(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ca, err := identity.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := identity.NewCA("other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	certs := map[string]*identity.Certificate{}
	for _, n := range []string{"cs", "alice", "mallory"} {
		var hosts []string
		if n == "cs" {
			hosts = []string{"localhost", "127.0.0.1"}
		}
		c, k, err := ca.Issue(n, identity.IssueOptions{Hosts: hosts})
		if err != nil {
			t.Fatal(err)
		}
		if err := identity.WriteIdentity(dir, n, c, k); err != nil {
			t.Fatal(err)
		}
		certs[n] = &identity.Certificate{Chain: [][]byte{c.Raw}, Leaf: c, Key: k}
	}
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"groups": {"room": ["alice"]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate)
	addr := freeAddr(t)
	base := "https://localhost:" + strings.Split(addr, ":")[1]
	client := func(c *identity.Certificate) *coord.Client {
		cl, err := coord.NewClientTLS(base, coord.ClientTLS{Certificate: c, Roots: roots, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		cl.Retries = 0
		return cl
	}
	aliceHTTP := func() *http.Client {
		tc := identity.ClientTLS(certs["alice"], mustVerifier(t, ca))
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 5 * time.Second}
	}
	hc, _, stop := startArgs(t, addr, []string{"-db", filepath.Join(dir, "cs.db"), "-listen", addr,
		"-trust-anchor", filepath.Join(dir, "ca.pem"), "-policy", policy,
		"-cert", filepath.Join(dir, "cs.pem"), "-key", filepath.Join(dir, "cs.key")}, aliceHTTP)

	alice := client(certs["alice"])
	kp := keyPackage(t, certs["alice"])
	if created, err := alice.Join(ctx, "room", kp); err != nil || !created {
		t.Fatalf("alice: created=%v %v", created, err)
	}
	if _, err := client(certs["mallory"]).Join(ctx, "room", keyPackage(t, certs["mallory"])); !errors.Is(err, coord.ErrForbidden) {
		t.Fatalf("mallory: %v", err)
	}
	oc, ok, err := other.Issue("alice", identity.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	outsider := &identity.Certificate{Chain: [][]byte{oc.Raw}, Leaf: oc, Key: ok}
	for name, c := range map[string]*identity.Certificate{"no certificate": nil, "outsider": outsider} {
		var se *coord.StatusError
		if _, err := client(c).Epoch(ctx, "room"); err == nil || errors.As(err, &se) {
			t.Errorf("%s: want a TLS handshake failure, got %v", name, err)
		}
	}
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`sframe_cs_refused_total{reason="not_admitted"} 1`,
		`sframe_cs_http_responses_total{code="403",endpoint="requests"} 1`,
		"sframe_cs_groups_created_total 1",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	logs := stop()
	if !strings.Contains(logs, "cs_identity=cs") || !strings.Contains(logs, "reason=not_admitted") {
		t.Errorf("logs:\n%s", logs)
	}
}

func mustVerifier(t *testing.T, ca *identity.CA) *identity.Verifier {
	t.Helper()
	v, err := identity.NewVerifier([]*x509.Certificate{ca.Certificate})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// keyPackage is a real mls-go KeyPackage with c's X.509 credential.
func keyPackage(t *testing.T, c *identity.Certificate) []byte {
	t.Helper()
	name, _ := identity.Name(c.Leaf)
	mc, err := mls.NewClient([]byte(name), ciphersuite.MLS128DHKEMP256, mls.WithX509Credential(c.Leaf.Raw, c.Key))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := mc.FreshKeyPackageBytes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return kp
}
