package group

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/coord/moqforward"
	"github.com/moqsframe/moqsframe/coord/store"
	"github.com/moqsframe/moqsframe/moq"
	"github.com/moqsframe/moqsframe/relay"
)

// env is an in-process relay (real QUIC on 127.0.0.1) and CS (real HTTPS,
// httptest) publishing through the relay with moqforward.
type env struct {
	t     *testing.T
	relay *relay.Relay
	addr  string
	fwd   *moqforward.Forwarder
	hs    *httptest.Server
	store store.Store
}

func testLogger() *slog.Logger {
	if os.Getenv("GROUP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	tlsConf, err := moq.DevTLSConfig("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{Addr: "127.0.0.1:0", TLS: tlsConf, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(context.Background())
	t.Cleanup(func() { r.Close() })
	e := &env{t: t, relay: r, addr: r.Addr().String(), store: store.NewMemStore()}
	e.fwd, err = moqforward.New(moqforward.Config{Relay: e.addr, MoQ: moq.Config{InsecureSkipVerify: true}, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.fwd.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.fwd.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	srv, err := coord.NewServer(coord.Config{Store: e.store, Forwarder: e.fwd, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	e.hs = httptest.NewTLSServer(srv)
	t.Cleanup(e.hs.Close)
	return e
}

func (e *env) session() *moq.Session {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := moq.Dial(ctx, e.addr, &moq.Config{InsecureSkipVerify: true})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

func (e *env) client() *coord.Client {
	cl, err := coord.NewClient(e.hs.URL, e.hs.Client())
	if err != nil {
		e.t.Fatal(err)
	}
	return cl
}

func (e *env) member(id, group string, sess *moq.Session, mod func(*Config)) *Member {
	e.t.Helper()
	cfg := Config{Certificate: testPKI.Issue(e.t, id), Verifier: testPKI.Verifier, Group: group, CS: e.client(), Session: sess, Logger: testLogger(),
		PollInterval: 300 * time.Millisecond, BackupDelay: 500 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { m.Close() })
	return m
}

func join(t *testing.T, m *Member) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Join(ctx); err != nil {
		t.Fatalf("%s: join: %v", m.Identity(), err)
	}
}

// converge waits until all members are at the same epoch ≥ min with the
// same exported secret, and returns it.
func converge(t *testing.T, min uint64, ms ...*Member) (uint64, []byte) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		var epoch uint64
		var key []byte
		var why string
		for i, m := range ms {
			ks, err := m.KeyState(context.Background())
			if err != nil {
				ok, why = false, fmt.Sprintf("%s: %v", m.Identity(), err)
				break
			}
			if i == 0 {
				epoch, key = ks.Epoch, ks.BaseKey
			}
			if ks.Epoch < min || ks.Epoch != epoch || !bytes.Equal(ks.BaseKey, key) {
				ok, why = false, fmt.Sprintf("%s at epoch %d, %s at %d (want ≥ %d)", ms[0].Identity(), epoch, m.Identity(), ks.Epoch, min)
				break
			}
			// MLS moves first; the key schedule gets the epoch right after.
			if l := m.Schedule().Status().Latest; l != ks.Epoch {
				ok, why = false, fmt.Sprintf("%s: MLS at epoch %d, key schedule at %d", m.Identity(), ks.Epoch, l)
				break
			}
		}
		if ok {
			return epoch, key
		}
		if time.Now().After(deadline) {
			t.Fatalf("members did not converge: %s", why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// media seals one object with from's stream and checks that every member
// of to opens it and every member of not cannot.
// waitSending waits until m seals with its newest epoch: every member
// acknowledged it (coordinated roll-over) or the roll-over timeout passed.
func waitSending(t *testing.T, m *Member) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for st := m.Schedule().Status(); st.Send != st.Latest; st = m.Schedule().Status() {
		if time.Now().After(deadline) {
			t.Fatalf("%s still seals with epoch %d, newest is %d", m.Identity(), st.Send, st.Latest)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func media(t *testing.T, from *Member, ctxVal uint64, to, not []*Member) {
	t.Helper()
	waitSending(t, from)
	st, err := from.Stream(ctxVal)
	if err != nil {
		t.Fatal(err)
	}
	md := []byte("track-metadata")
	pt := []byte(fmt.Sprintf("frame from %s at epoch %d", from.Identity(), from.Epoch()))
	ct, err := st.Seal(nil, md, pt)
	if err != nil {
		t.Fatalf("%s seal: %v", from.Identity(), err)
	}
	for _, m := range to {
		got, err := m.Schedule().Open(nil, md, ct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("%s cannot open %s's media: %v", m.Identity(), from.Identity(), err)
		}
	}
	for _, m := range not {
		if _, err := m.Schedule().Open(nil, md, ct); err == nil {
			t.Fatalf("%s (removed) opened %s's new-epoch media", m.Identity(), from.Identity())
		}
	}
}
