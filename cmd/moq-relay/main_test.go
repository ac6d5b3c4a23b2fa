package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/coord/moqforward"
	"github.com/moqsframe/moqsframe/identity"
)

func TestParseFlagsDefaults(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.listen != "127.0.0.1:4443" || o.trustAnchor != "" || o.subscribeNeedsCert || o.csPrefix != nil {
		t.Fatalf("defaults %+v", o)
	}
	cfg, err := o.relayConfig(slog.New(slog.DiscardHandler))
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
	o, err := parseFlags(base, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.csPrefix, moqforward.DefaultPrefix) || o.csIdentity != "cs" || o.subscribeNeedsCert {
		t.Fatalf("defaults with -trust-anchor %+v", o)
	}
	o, err = parseFlags(append(base, "-cs-prefix", "org/coord/v1", "-cs-identity", "coordinator", "-subscribe-needs-cert"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.relayConfig(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TrustAnchor == nil || !slices.Equal(cfg.CSPrefix, []string{"org", "coord", "v1"}) || cfg.CSIdentity != "coordinator" || !cfg.SubscribeNeedsCert {
		t.Fatalf("config %+v", cfg)
	}
	if len(cfg.TLS.Certificates) != 1 {
		t.Fatalf("relay certificate not loaded: %+v", cfg.TLS)
	}

	// An unreadable anchor is reported when the config is built.
	o, err = parseFlags(append(base[2:], "-trust-anchor", filepath.Join(dir, "missing.pem")), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.relayConfig(slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "-trust-anchor") {
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
		{[]string{"stray"}, "unexpected argument"},
		{[]string{"-no-such-flag"}, "not defined"},
	}
	for _, c := range cases {
		_, err := parseFlags(c.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: want error containing %q, got %v", c.args, c.want, err)
		}
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
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
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-metrics", "", "-log-level", "error",
			"-trust-anchor", filepath.Join(dir, "ca.pem"), "-cert", filepath.Join(dir, "relay.pem"), "-key", filepath.Join(dir, "relay.key")}, io.Discard)
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
