package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/cmd/internal/cli"
	"github.com/moqsframe/moqsframe/cmd/internal/cli/clitest"
	"github.com/moqsframe/moqsframe/coord/moqforward"
	"github.com/moqsframe/moqsframe/identity"
)

func TestParseFlagsDefaults(t *testing.T) {
	o, err := parseFlags(nil, env())
	if err != nil {
		t.Fatal(err)
	}
	if o.Listen != "127.0.0.1:4443" || o.TrustAnchor != "" || o.SubscribeNeedsCert || o.CSPrefix != nil || o.Metrics != "127.0.0.1:9090" || o.LogLevel != slog.LevelInfo {
		t.Fatalf("defaults %+v", o)
	}
	cfg, err := relayConfig(o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// Without -trust-anchor the relay is configured exactly as before.
	if cfg.TrustAnchor != nil || cfg.CSPrefix != nil || cfg.CSIdentity != "" || cfg.SubscribeNeedsCert || cfg.TLS == nil {
		t.Fatalf("config without -trust-anchor %+v", cfg)
	}
}

// writePKI writes a CA and a relay certificate for 127.0.0.1 into a
// temporary directory.
func writePKI(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	ca, err := identity.NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.Issue("relay", identity.IssueOptions{Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteIdentity(dir, "relay", c, k); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestParseFlagsTrustAnchor(t *testing.T) {
	dir := writePKI(t)
	base := []string{"-trust-anchor", filepath.Join(dir, "ca.pem"), "-cert", filepath.Join(dir, "relay.pem"), "-key", filepath.Join(dir, "relay.key")}
	o, err := parseFlags(base, env())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.CSPrefix, moqforward.DefaultPrefix) || o.CSIdentity != "cs" || o.SubscribeNeedsCert {
		t.Fatalf("defaults with -trust-anchor %+v", o)
	}
	o, err = parseFlags(append(base, "-cs-prefix", "org/coord/v1", "-cs-identity", "coordinator", "-subscribe-needs-cert"), env())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := relayConfig(o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TrustAnchor == nil || !slices.Equal(cfg.CSPrefix, []string{"org", "coord", "v1"}) || cfg.CSIdentity != "coordinator" || !cfg.SubscribeNeedsCert {
		t.Fatalf("config %+v", cfg)
	}
	if len(cfg.TLS.Certificates) != 1 {
		t.Fatalf("relay certificate not loaded: %+v", cfg.TLS)
	}

	// An edge: its own certificate goes upstream, verified against the anchor.
	o, err = parseFlags(append(slices.Clone(base), "-upstream", "127.0.0.1:1", "-relay-identity", "edge-a,edge-b"), env())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err = relayConfig(o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UpstreamTLS == nil || len(cfg.UpstreamTLS.Certificates) != 1 || cfg.UpstreamTLS.RootCAs == nil || cfg.UpstreamTLS.InsecureSkipVerify ||
		!slices.Equal(cfg.RelayIdentities, []string{"edge-a", "edge-b"}) || len(cfg.Upstreams) != 1 {
		t.Fatalf("edge config %+v", cfg)
	}

	// An unreadable anchor is reported when the config is built.
	o, err = parseFlags(append(base[2:], "-trust-anchor", filepath.Join(dir, "missing.pem")), env())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := relayConfig(o, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "-trust-anchor") {
		t.Fatalf("missing anchor file: %v", err)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	dir := writePKI(t)
	auth := []string{"-trust-anchor", filepath.Join(dir, "ca.pem"), "-cert", filepath.Join(dir, "relay.pem"), "-key", filepath.Join(dir, "relay.key")}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-subscribe-needs-cert"}, "needs -trust-anchor"},
		{[]string{"-cs-prefix", "x"}, "needs -trust-anchor"},
		{[]string{"-cs-identity", "x"}, "needs -trust-anchor"},
		{[]string{"-trust-anchor", filepath.Join(dir, "ca.pem")}, "needs -cert and -key"},
		{[]string{"-cert", "a.pem"}, "together"},
		{append(slices.Clone(auth), "-cs-prefix", "a//b"), "bad -cs-prefix"},
		{append(slices.Clone(auth), "-cs-prefix", ""), "bad -cs-prefix"},
		{append(slices.Clone(auth), "-cs-identity", "no spaces"), "bad -cs-identity"},
		{[]string{"-log-level", "loud"}, "bad -log-level"},
		{[]string{"-queue-bytes", "-1"}, "bad -queue-bytes"},
		{[]string{"-relay-identity", "edge"}, "needs -trust-anchor"},
		{append(slices.Clone(auth), "-relay-identity", "a,b c"), "bad identity"},
		{append(slices.Clone(auth), "-upstream-insecure", "-upstream", "127.0.0.1:1"), "contradicts"},
		{[]string{"-upstream", "nohostport"}, "bad upstream address"},
		{[]string{"-upstream", "127.0.0.1:1=a//b"}, "bad upstream namespace"},
		{[]string{"-queue-bytes", "1000", "-max-object-size", "2000"}, "bad -queue-bytes"},
		{[]string{"stray"}, "unexpected argument"},
		{[]string{"-no-such-flag"}, "not defined"},
	}
	for _, c := range cases {
		_, err := parseFlags(c.args, env())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: want error containing %q, got %v", c.args, c.want, err)
		}
	}
	if _, err := parseFlags([]string{"-h"}, env()); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

// run with -trust-anchor loads the files, starts the relay and stops
// cleanly when its context ends.
func TestRunWithTrustAnchorStops(t *testing.T) {
	dir := writePKI(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		cfg, err := parseFlags([]string{"-listen", "127.0.0.1:0", "-metrics", "127.0.0.1:0", "-log-level", "error",
			"-trust-anchor", filepath.Join(dir, "ca.pem"), "-cert", filepath.Join(dir, "relay.pem"), "-key", filepath.Join(dir, "relay.key")}, env())
		if err != nil {
			done <- err
			return
		}
		done <- run(ctx, cfg, io.Discard, io.Discard)
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

var env = clitest.Env

func TestParseFlagsEnv(t *testing.T) {
	dir := writePKI(t)
	clitest.RunParse(t, parseFlags, []clitest.ParseCase[Config]{
		{Name: "env overrides default", Env: env("MOQ_RELAY_LISTEN", "0.0.0.0:4443", "MOQ_RELAY_IDLE_TIMEOUT", "1m", "MOQ_RELAY_METRICS", ":9999", "MOQ_RELAY_LOG_LEVEL", "warn"),
			Check: func(c Config) bool {
				return c.Listen == "0.0.0.0:4443" && c.IdleTimeout == time.Minute && c.Metrics == ":9999" && c.LogLevel == slog.LevelWarn
			}},
		{Name: "flag wins over env", Args: []string{"-listen", "127.0.0.1:1", "-max-drops", "-1"}, Env: env("MOQ_RELAY_LISTEN", "0.0.0.0:4443", "MOQ_RELAY_MAX_DROPS", "5"),
			Check: func(c Config) bool { return c.Listen == "127.0.0.1:1" && c.MaxDrops == -1 }},
		{Name: "trust anchor from env", Env: env("MOQ_RELAY_TRUST_ANCHOR", filepath.Join(dir, "ca.pem"), "MOQ_RELAY_CERT", filepath.Join(dir, "relay.pem"),
			"MOQ_RELAY_KEY", filepath.Join(dir, "relay.key"), "MOQ_RELAY_SUBSCRIBE_NEEDS_CERT", "true", "MOQ_RELAY_CS_PREFIX", "x/y"),
			Check: func(c Config) bool { return c.SubscribeNeedsCert && slices.Equal(c.CSPrefix, []string{"x", "y"}) }},
		{Name: "authorization env without anchor", Env: env("MOQ_RELAY_CS_IDENTITY", "coordinator"), WantErr: "-cs-identity needs -trust-anchor"},
		{Name: "upstreams from flags and env", Args: []string{"-upstream", "10.0.0.1:4443=a/b,c"}, Env: env("MOQ_RELAY_UPSTREAM", "10.0.0.2:1 10.0.0.3:2"),
			Check: func(c Config) bool {
				return len(c.Upstreams) == 1 && c.Upstreams[0].Addr == "10.0.0.1:4443" && len(c.Upstreams[0].Namespaces) == 2 &&
					slices.Equal(c.Upstreams[0].Namespaces[0], []string{"a", "b"}) && slices.Equal(c.Upstreams[0].Namespaces[1], []string{"c"})
			}},
		{Name: "upstreams from env", Env: env("MOQ_RELAY_UPSTREAM", "10.0.0.2:1 10.0.0.3:2=x"),
			Check: func(c Config) bool {
				return len(c.Upstreams) == 2 && c.Upstreams[1].Addr == "10.0.0.3:2" && len(c.Upstreams[0].Namespaces) == 0
			}},
		{Name: "bad duration", Args: []string{"-idle-timeout", "long"}, WantErr: `invalid value "long" for flag -idle-timeout`},
		{Name: "bad env duration", Env: env("MOQ_RELAY_IDLE_TIMEOUT", "long"), WantErr: `bad $MOQ_RELAY_IDLE_TIMEOUT "long"`},
		{Name: "bad env int", Env: env("MOQ_RELAY_QUEUE", "many"), WantErr: "$MOQ_RELAY_QUEUE"},
	})
}

func TestHelpAndExitCodes(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := cli.Exit(context.Background(), "moq-relay", []string{"-h"}, env(), &stdout, &stderr, parseFlags, run); code != 0 || stderr.Len() != 0 ||
		!strings.Contains(stdout.String(), "usage: moq-relay") || !strings.Contains(stdout.String(), "[$MOQ_RELAY_TRUST_ANCHOR]") {
		t.Fatalf("-h: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := cli.Exit(context.Background(), "moq-relay", []string{"-queue", "x"}, env(), &stdout, &stderr, parseFlags, run); code != 2 || stdout.Len() != 0 ||
		strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "moq-relay -h") {
		t.Fatalf("bad flag: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	// A run error (the metrics address is taken) exits 1.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stderr.Reset()
	if code := cli.Exit(context.Background(), "moq-relay", []string{"-listen", "127.0.0.1:0", "-metrics", ln.Addr().String()}, env(), &stdout, &stderr, parseFlags, run); code != 1 ||
		!strings.Contains(stderr.String(), "moq-relay: metrics listener") {
		t.Fatalf("run error: exit %d, stderr %q", code, stderr.String())
	}
}
