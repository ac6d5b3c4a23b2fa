package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/coord"
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
	logs := &syncBuf{}
	done := make(chan error, 1)
	go func() {
		done <- run([]string{"-db", db, "-listen", addr, "-dev-cert", "-dev-cert-out", certOut}, logs)
	}()
	var hc *http.Client
	base := "https://localhost:" + strings.Split(addr, ":")[1]
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pemBytes, err := os.ReadFile(certOut); err == nil && len(pemBytes) > 0 {
			pool := x509.NewCertPool()
			if pool.AppendCertsFromPEM(pemBytes) {
				hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
				if resp, err := hc.Get(base + "/healthz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						break
					}
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
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("sframe-cs exit: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("sframe-cs did not stop on SIGTERM")
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
		`sframe_cs_http_responses_total{endpoint="requests",code="201"} 1`,
		`sframe_cs_http_responses_total{endpoint="requests",code="200"} 1`,
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

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-dev-cert", "-insecure-http"},
		{"-tls-cert", "x.pem"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}
