package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/cmd/internal/cli"
	"github.com/moqsframe/moqsframe/cmd/internal/cli/clitest"
	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/coord/wire/wiretest"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/internal/etcdtest"
	mls "github.com/thomas-vilte/mls-go"
	"github.com/thomas-vilte/mls-go/ciphersuite"
)

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
	logs := &clitest.SyncBuffer{}
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

var env = clitest.Env

func TestParseFlags(t *testing.T) {
	auth := []string{"-trust-anchor", "ca.pem", "-cert", "c.pem", "-key", "c.key"}
	clitest.RunParse(t, parseFlags, []clitest.ParseCase[Config]{
		{Name: "no certificate", Args: []string{}, WantErr: "HTTPS needs a certificate"},
		{Name: "two modes", Args: []string{"-dev-cert", "-insecure-http"}, WantErr: "choose one of"},
		{Name: "tls-cert alone", Args: []string{"-tls-cert", "x.pem"}, WantErr: "-tls-cert and -tls-key must be given together"},
		{Name: "anchor without cert", Args: []string{"-trust-anchor", "ca.pem", "-policy", "p.json"}, WantErr: "-trust-anchor needs -cert and -key"},
		{Name: "anchor without policy", Args: auth, WantErr: "exactly one of -policy FILE or -policy-allow-all"},
		{Name: "both policies", Args: append([]string{"-policy", "p.json", "-policy-allow-all"}, auth...), WantErr: "exactly one of -policy"},
		{Name: "anchor and dev cert", Args: append([]string{"-policy-allow-all", "-dev-cert"}, auth...), WantErr: "choose one of"},
		{Name: "zero rate", Args: append([]string{"-policy-allow-all", "-rate", "0"}, auth...), WantErr: "must be positive"},
		{Name: "policy without anchor", Args: []string{"-dev-cert", "-policy", "p.json"}, WantErr: "need -trust-anchor"},
		{Name: "relay-ca and insecure", Args: []string{"-dev-cert", "-relay-ca", "ca.pem", "-insecure"}, WantErr: "exclude each other"},
		{Name: "bad duration", Args: []string{"-dev-cert", "-redeliver-every", "often"}, WantErr: `invalid value "often" for flag -redeliver-every`},
		{Name: "bad log level", Args: []string{"-dev-cert", "-log-level", "loud"}, WantErr: "bad -log-level"},
		{Name: "unknown flag", Args: []string{"-no-such-flag"}, WantErr: "flag provided but not defined"},
		{Name: "stray argument", Args: []string{"-dev-cert", "stray"}, WantErr: `unexpected argument "stray"`},
		{Name: "bad env", Env: env("SFRAME_CS_DEV_CERT", "yes please"), WantErr: `bad $SFRAME_CS_DEV_CERT "yes please"`},
		{Name: "bad env duration", Args: []string{"-dev-cert"}, Env: env("SFRAME_CS_PENDING_JOIN_TTL", "forever"), WantErr: "$SFRAME_CS_PENDING_JOIN_TTL"},
		{Name: "defaults", Args: []string{"-dev-cert"}, Check: func(c Config) bool {
			return c.Listen == "127.0.0.1:8443" && c.DB == "sframe-cs.db" && c.LogLevel == slog.LevelInfo && c.RedeliverEvery == 5*time.Second &&
				len(c.DevCertHosts) == 3 && strings.Join(c.NamespacePrefix, "/") == "moqsframe/cs" && c.Rate == coord.DefaultRate
		}},
		{Name: "env overrides default", Args: []string{"-dev-cert"},
			Env: env("SFRAME_CS_LISTEN", "0.0.0.0:443", "SFRAME_CS_REDELIVER_EVERY", "1s", "SFRAME_CS_NAMESPACE_PREFIX", "/a/b/", "SFRAME_CS_LOG_LEVEL", "error"),
			Check: func(c Config) bool {
				return c.Listen == "0.0.0.0:443" && c.RedeliverEvery == time.Second && strings.Join(c.NamespacePrefix, "/") == "a/b" && c.LogLevel == slog.LevelError
			}},
		{Name: "flag wins over env", Args: []string{"-dev-cert", "-db", "flag.db"}, Env: env("SFRAME_CS_DB", "env.db"),
			Check: func(c Config) bool { return c.DB == "flag.db" }},
		{Name: "store bolt", Args: []string{"-dev-cert", "-store", "bolt:x.db"}, Check: func(c Config) bool { return c.DB == "x.db" && c.Etcd == nil }},
		{Name: "store etcd", Args: []string{"-dev-cert", "-store", "etcd:e1:2379,http://e2:2379"},
			Check: func(c Config) bool {
				return strings.Join(c.Etcd, " ") == "http://e1:2379 http://e2:2379" && c.EtcdPrefix == "moqsframe/cs/" && c.EtcdLeaseTTL == 5*time.Second && c.ReplicaName != ""
			}},
		{Name: "store etcd tls", Args: []string{"-dev-cert", "-store", "etcd:e1:2379", "-etcd-ca", "ca.pem", "-etcd-cert", "c.pem", "-etcd-key", "c.key"},
			Env: env("SFRAME_CS_ETCD_USER", "cs", "SFRAME_CS_ETCD_PASSWORD", "pw"),
			Check: func(c Config) bool {
				return c.Etcd[0] == "https://e1:2379" && c.EtcdUser == "cs" && c.EtcdPassword == "pw"
			}},
		{Name: "bad store", Args: []string{"-dev-cert", "-store", "redis:x"}, WantErr: "want bolt:FILE or etcd:"},
		{Name: "empty endpoint", Args: []string{"-dev-cert", "-store", "etcd:a:1,,b:2"}, WantErr: "empty endpoint"},
		{Name: "etcd flags without etcd", Args: []string{"-dev-cert", "-etcd-ca", "ca.pem"}, WantErr: "need -store etcd"},
		{Name: "etcd cert alone", Args: []string{"-dev-cert", "-store", "etcd:a:1", "-etcd-cert", "c.pem"}, WantErr: "-etcd-cert and -etcd-key"},
		{Name: "etcd user alone", Args: []string{"-dev-cert", "-store", "etcd:a:1", "-etcd-user", "cs"}, WantErr: "-etcd-user and -etcd-password"},
		{Name: "short lease", Args: []string{"-dev-cert", "-store", "etcd:a:1", "-etcd-lease-ttl", "1s"}, WantErr: "at least 2s"},
		{Name: "mode from env", Env: env("SFRAME_CS_TRUST_ANCHOR", "ca.pem", "SFRAME_CS_CERT", "c.pem", "SFRAME_CS_KEY", "c.key", "SFRAME_CS_POLICY_ALLOW_ALL", "true"),
			Check: func(c Config) bool { return c.TrustAnchor == "ca.pem" && c.PolicyAllowAll }},
	})
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

func TestMain(m *testing.M) { etcdtest.Main(m) }

// TestServeEtcdReplicas: two sframe-cs runs on one etcd cluster (-store
// etcd:...) serve the same group: what one decides the other sees, and
// both shut down cleanly (the forwarder resigning).
func TestServeEtcdReplicas(t *testing.T) {
	ctx := context.Background()
	eps := strings.Join(etcdtest.Shared(t).Endpoints(), ",")
	prefix := etcdtest.Prefix(t)
	var clients []*coord.Client
	var stops []func() string
	for i := range 2 {
		addr := freeAddr(t)
		certOut := filepath.Join(t.TempDir(), "cert.pem")
		hc, base, stop := startArgs(t, addr, []string{"-store", "etcd:" + eps, "-etcd-prefix", prefix, "-replica-name", fmt.Sprint("r", i),
			"-listen", addr, "-dev-cert", "-dev-cert-out", certOut}, func() *http.Client {
			pemBytes, err := os.ReadFile(certOut)
			pool := x509.NewCertPool()
			if err != nil || !pool.AppendCertsFromPEM(pemBytes) {
				return nil
			}
			return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
		})
		cl, err := coord.NewClient(base, hc)
		if err != nil {
			t.Fatal(err)
		}
		clients, stops = append(clients, cl), append(stops, stop)
	}
	if created, err := clients[0].Join(ctx, "g", wiretest.KeyPackage("a")); err != nil || !created {
		t.Fatalf("create via replica 0: %v %v", created, err)
	}
	if created, err := clients[1].Join(ctx, "g", wiretest.KeyPackage("b")); err != nil || created {
		t.Fatalf("join via replica 1: %v %v", created, err)
	}
	if err := clients[1].Commit(ctx, "g", 0, wiretest.Commit("g", 0, "c0"), nil); err != nil {
		t.Fatalf("commit via replica 1: %v", err)
	}
	if e, err := clients[0].Epoch(ctx, "g"); err != nil || e != 1 {
		t.Fatalf("epoch via replica 0 = %d, %v; want 1", e, err)
	}
	logs := stops[0]() + stops[1]()
	if !strings.Contains(logs, "now the forwarder") {
		t.Fatalf("no replica was elected forwarder:\n%s", logs)
	}
}
