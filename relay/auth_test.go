package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/coord/moqforward"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/moq"
)

// testPKI is a deployment CA with a relay certificate for 127.0.0.1.
type testPKI struct {
	ca *identity.CA
	v  *identity.Verifier
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := identity.NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier([]*x509.Certificate{ca.Certificate})
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, v: v}
}

func (p *testPKI) cert(t *testing.T, name string, hosts ...string) *identity.Certificate {
	t.Helper()
	c, k, err := p.ca.Issue(name, identity.IssueOptions{Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	return &identity.Certificate{Chain: [][]byte{c.Raw}, Leaf: c, Key: k}
}

// serveRelay starts a relay with cfg, serving until the test ends, when it
// must close without a Serve error.
func serveRelay(t *testing.T, cfg Config) *Relay {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serveDone := make(chan error, 1)
	go func() { serveDone <- r.Serve(context.Background()) }()
	t.Cleanup(func() {
		_ = r.Close()
		if err := <-serveDone; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return r
}

// newAuthRelay runs a relay with mTLS against p's CA; its server
// certificate is from the same CA.
func newAuthRelay(t *testing.T, p *testPKI, cfg Config) *Relay {
	t.Helper()
	srv := p.cert(t, "relay", "127.0.0.1")
	cfg.Addr = "127.0.0.1:0"
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{srv.TLS()}, MinVersion: tls.VersionTLS13}
	cfg.TrustAnchor = p.v
	cfg.Logger = slog.New(slog.DiscardHandler)
	return serveRelay(t, cfg)
}

// dialAs connects with cert (nil: anonymous), verifying the relay against
// p's CA.
func dialAs(t *testing.T, r *Relay, p *testPKI, cert *identity.Certificate) *moq.Session {
	t.Helper()
	s, err := dialAsErr(r, p, cert)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func dialAsErr(r *Relay, p *testPKI, cert *identity.Certificate) (*moq.Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return moq.Dial(ctx, r.Addr().String(), &moq.Config{TLSConfig: identity.ClientTLS(cert, p.v)})
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds; the test context bounds the wait.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exchange writes one object on pub and requires every sub to read it.
func exchange(ctx context.Context, t *testing.T, pub *moq.Publisher, group uint64, subs ...*moq.Subscription) {
	t.Helper()
	payload := []byte{byte(group), 0xAA}
	if err := pub.WriteObject(group, 0, 0, payload); err != nil {
		t.Fatal(err)
	}
	for i, sub := range subs {
		obj, err := sub.ReadObject(ctx)
		if err != nil {
			t.Fatalf("subscriber %d: %v", i, err)
		}
		if obj.GroupID != group || !bytes.Equal(obj.Payload, payload) {
			t.Fatalf("subscriber %d: got group %d payload %x, want %d %x", i, obj.GroupID, obj.Payload, group, payload)
		}
	}
}

// subscribeAndExchange subscribes sess to (ns, track), waits until pub
// serves it, and checks that an object of group 0 gets through.
func subscribeAndExchange(ctx context.Context, t *testing.T, sess *moq.Session, pub *moq.Publisher, ns []string, track string) *moq.Subscription {
	t.Helper()
	sub, err := sess.Subscribe(ctx, ns, track)
	if err != nil {
		t.Fatalf("subscribe %v/%s: %v", ns, track, err)
	}
	if err := pub.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	exchange(ctx, t, pub, 0, sub)
	return sub
}

func mustRefuse(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, moq.ErrUnauthorized) {
		t.Fatalf("%s: want moq.ErrUnauthorized, got %v", what, err)
	}
}

func TestRelayAuthAnonymousAnnounceRefused(t *testing.T) {
	p := newTestPKI(t)
	r := newAuthRelay(t, p, Config{})
	ctx := testCtx(t)
	anon := dialAs(t, r, p, nil)
	if id := anon.PeerIdentity(); id != "relay" {
		t.Fatalf("client sees relay identity %q", id)
	}
	err := anon.Announce(ctx, []string{"sg", "room"})
	mustRefuse(t, err, "anonymous announce")
	if !strings.Contains(err.Error(), "client certificate") {
		t.Errorf("refusal does not say why: %v", err)
	}
	// The session survives the refusal and may still subscribe (open by
	// default): the namespace is simply unknown.
	if _, err := anon.Subscribe(ctx, []string{"sg", "room"}, "t"); !errors.Is(err, moq.ErrUnknownTrack) {
		t.Fatalf("anonymous subscribe: want ErrUnknownTrack, got %v", err)
	}
	m := r.Metrics()
	if m.AnnounceRefusedUnauthenticated != 1 || m.Announcements != 0 || m.SubscribeRefusedUnauthenticated != 0 {
		t.Fatalf("metrics %+v", m)
	}
	buf := metricsText(t, m)
	for _, want := range []string{
		"# TYPE moq_relay_announce_refused_total counter\n",
		`moq_relay_announce_refused_total{reason="unauthenticated"} 1` + "\n",
		`moq_relay_announce_refused_total{reason="owned"} 0` + "\n",
		`moq_relay_subscribe_refused_total{reason="unauthenticated"} 0` + "\n",
		"moq_relay_announce_takeovers_total 0\n",
	} {
		if !strings.Contains(buf, want) {
			t.Errorf("metrics lack %q:\n%s", want, buf)
		}
	}
}

func TestRelayAuthForeignCertificateFailsHandshake(t *testing.T) {
	p := newTestPKI(t)
	r := newAuthRelay(t, p, Config{})
	other := newTestPKI(t)
	if s, err := dialAsErr(r, p, other.cert(t, "mallory")); err == nil {
		_ = s.Close()
		t.Fatal("a certificate from another CA was accepted")
	}
	// Expired, from the right CA.
	c, k, err := p.ca.Issue("old", identity.IssueOptions{NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := dialAsErr(r, p, &identity.Certificate{Chain: [][]byte{c.Raw}, Leaf: c, Key: k}); err == nil {
		_ = s.Close()
		t.Fatal("an expired certificate was accepted")
	}
	// A valid one still works afterwards.
	ctx := testCtx(t)
	s := dialAs(t, r, p, p.cert(t, "alice"))
	if err := s.Announce(ctx, []string{"sg", "a"}); err != nil {
		t.Fatal(err)
	}
	// Serve registers a session after its SETUP, independently of its
	// first ANNOUNCE: wait for it. The refused handshakes never got there.
	waitFor(ctx, t, "the relay to register alice's session", func() bool { return r.Metrics().SessionsTotal >= 1 })
	if m := r.Metrics(); m.SessionsTotal != 1 {
		t.Fatalf("sessions accepted %d, want 1", m.SessionsTotal)
	}
}

func TestRelayAuthSecondAnnouncerRefusedFirstKeepsServing(t *testing.T) {
	p := newTestPKI(t)
	r := newAuthRelay(t, p, Config{})
	ctx := testCtx(t)
	ns := []string{"sg", "room"}
	alice := dialAs(t, r, p, p.cert(t, "alice"))
	pub, err := alice.Publish(ns, "video")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	sub1 := dialAs(t, r, p, nil)
	s1 := subscribeAndExchange(ctx, t, sub1, pub, ns, "video")

	bob := dialAs(t, r, p, p.cert(t, "bob"))
	if _, err := bob.Publish(ns, "video"); err != nil {
		t.Fatal(err)
	}
	// The same namespace, one under it (would capture its SUBSCRIBEs by
	// longest prefix) and one above it (would capture them once alice
	// leaves) are all refused.
	for _, try := range [][]string{ns, {"sg", "room", "x"}, {"sg"}} {
		mustRefuse(t, bob.Announce(ctx, try), "bob announcing "+strings.Join(try, "/"))
	}
	// A disjoint namespace is fine.
	if err := bob.Announce(ctx, []string{"sg", "other"}); err != nil {
		t.Fatal(err)
	}

	// A new subscriber still reaches alice, and so does the old one.
	sub2 := dialAs(t, r, p, nil)
	s2, err := sub2.Subscribe(ctx, ns, "video")
	if err != nil {
		t.Fatal(err)
	}
	exchange(ctx, t, pub, 1, s1, s2)

	m := r.Metrics()
	if m.AnnounceRefusedOwned != 3 || m.Announcements != 2 || m.AnnounceTakeovers != 0 {
		t.Fatalf("metrics %+v", m)
	}
}

func TestRelayAuthSameIdentityTakesOverAfterReconnect(t *testing.T) {
	p := newTestPKI(t)
	r := newAuthRelay(t, p, Config{})
	ctx := testCtx(t)
	ns := []string{"sg", "room"}
	cert := p.cert(t, "alice")
	old := dialAs(t, r, p, cert)
	if err := old.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// Reconnect while the old session is still there.
	fresh := dialAs(t, r, p, cert)
	pub, err := fresh.Publish(ns, "video")
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Announce(ctx, ns); err != nil {
		t.Fatalf("same identity re-announcing: %v", err)
	}
	if m := r.Metrics(); m.AnnounceTakeovers != 1 || m.Announcements != 1 {
		t.Fatalf("metrics %+v", m)
	}
	sub := dialAs(t, r, p, nil)
	subscribeAndExchange(ctx, t, sub, pub, ns, "video")

	// The old session leaving does not take the namespace from the new one.
	waitFor(ctx, t, "the relay to register all three sessions", func() bool { return r.Metrics().Sessions == 3 })
	_ = old.Close()
	waitFor(ctx, t, "the relay to drop the old session", func() bool { return r.Metrics().Sessions == 2 })
	if m := r.Metrics(); m.Announcements != 1 {
		t.Fatalf("announcement lost with the old session: %+v", m)
	}
	pub2, _ := fresh.Publish(ns, "audio")
	subscribeAndExchange(ctx, t, sub, pub2, ns, "audio")
	mustRefuse(t, dialAs(t, r, p, p.cert(t, "bob")).Announce(ctx, ns), "bob after alice reconnected")
}

func TestRelayAuthOwnerLeavesOtherMayAnnounce(t *testing.T) {
	p := newTestPKI(t)
	r := newAuthRelay(t, p, Config{})
	ctx := testCtx(t)
	ns := []string{"sg", "room"}
	alice := dialAs(t, r, p, p.cert(t, "alice"))
	if err := alice.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	bob := dialAs(t, r, p, p.cert(t, "bob"))
	pub, _ := bob.Publish(ns, "video")
	mustRefuse(t, bob.Announce(ctx, ns), "bob while alice is there")
	_ = alice.Close()
	waitFor(ctx, t, "alice's announcement to go", func() bool { return r.Metrics().Announcements == 0 })
	if err := bob.Announce(ctx, ns); err != nil {
		t.Fatalf("bob after alice left: %v", err)
	}
	sub := dialAs(t, r, p, nil)
	subscribeAndExchange(ctx, t, sub, pub, ns, "video")
	// Now alice, back, is the one refused.
	mustRefuse(t, dialAs(t, r, p, p.cert(t, "alice")).Announce(ctx, ns), "alice after bob took the free namespace")
}

func TestRelayAuthUnannounceReleasesNamespace(t *testing.T) {
	p := newTestPKI(t)
	r := newAuthRelay(t, p, Config{})
	ctx := testCtx(t)
	ns := []string{"sg", "room"}
	alice := dialAs(t, r, p, p.cert(t, "alice"))
	if err := alice.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// v0.5.0 clients cannot send UNANNOUNCE (bug #6); call the handler the
	// relay's session would call, with the relay's side of alice's session.
	var relaySide *moq.Session
	waitFor(ctx, t, "the relay to register alice's session", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for s := range r.sessions {
			if s.PeerIdentity() == "alice" {
				relaySide = s
			}
		}
		return relaySide != nil
	})
	bob := dialAs(t, r, p, p.cert(t, "bob"))
	r.onUnannounce(bob, ns) // not bob's: ignored
	mustRefuse(t, bob.Announce(ctx, ns), "bob before alice unannounced")
	r.onUnannounce(relaySide, ns)
	if err := bob.Announce(ctx, ns); err != nil {
		t.Fatalf("bob after alice unannounced: %v", err)
	}
}

func TestRelayAuthCSPrefixReserved(t *testing.T) {
	p := newTestPKI(t)
	r := newAuthRelay(t, p, Config{})
	ctx := testCtx(t)
	alice := dialAs(t, r, p, p.cert(t, "alice"))
	for _, try := range [][]string{
		moqforward.Namespace(moqforward.DefaultPrefix, "room"),
		moqforward.DefaultPrefix,
		{"moqsframe"}, // a prefix of it would capture its SUBSCRIBEs whenever the CS is away
	} {
		err := alice.Announce(ctx, try)
		mustRefuse(t, err, "alice announcing "+strings.Join(try, "/"))
	}
	if err := alice.Announce(ctx, []string{"moqsframe", "members", "alice"}); err != nil {
		t.Fatalf("outside the CS prefix: %v", err)
	}
	cs := dialAs(t, r, p, p.cert(t, DefaultCSIdentity))
	for _, ns := range [][]string{moqforward.DefaultPrefix, moqforward.Namespace(moqforward.DefaultPrefix, "room")} {
		if err := cs.Announce(ctx, ns); err != nil {
			t.Fatalf("CS announcing %q: %v", ns, err)
		}
	}
	if m := r.Metrics(); m.AnnounceRefusedReserved != 3 || m.Announcements != 3 {
		t.Fatalf("metrics %+v", m)
	}
}

func TestRelayAuthCustomCSPrefixAndIdentity(t *testing.T) {
	p := newTestPKI(t)
	r := newAuthRelay(t, p, Config{CSPrefix: []string{"coord"}, CSIdentity: "coordinator"})
	ctx := testCtx(t)
	mustRefuse(t, dialAs(t, r, p, p.cert(t, "cs")).Announce(ctx, []string{"coord", "g"}), "default CS name under a custom one")
	if err := dialAs(t, r, p, p.cert(t, "coordinator")).Announce(ctx, []string{"coord", "g"}); err != nil {
		t.Fatal(err)
	}
	// The default prefix is an ordinary namespace now.
	if err := dialAs(t, r, p, p.cert(t, "alice")).Announce(ctx, moqforward.DefaultPrefix); err != nil {
		t.Fatal(err)
	}
}

func TestRelayAuthSubscribeNeedsCert(t *testing.T) {
	p := newTestPKI(t)
	r := newAuthRelay(t, p, Config{SubscribeNeedsCert: true})
	ctx := testCtx(t)
	ns := []string{"sg", "room"}
	alice := dialAs(t, r, p, p.cert(t, "alice"))
	pub, _ := alice.Publish(ns, "video")
	if err := alice.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	anon := dialAs(t, r, p, nil)
	_, err := anon.Subscribe(ctx, ns, "video")
	mustRefuse(t, err, "anonymous subscribe")
	if m := r.Metrics(); m.SubscribeRefusedUnauthenticated != 1 || m.Tracks != 0 {
		t.Fatalf("metrics %+v", m)
	}
	bob := dialAs(t, r, p, p.cert(t, "bob"))
	subscribeAndExchange(ctx, t, bob, pub, ns, "video")
	if m := r.Metrics(); m.SubscribeRefusedUnauthenticated != 1 {
		t.Fatalf("metrics %+v", m)
	}
}

// Without a trust anchor nothing changes: no client certificate is asked
// for, anyone announces, the latest announcer wins.
func TestRelayNoTrustAnchorLatestAnnouncerWins(t *testing.T) {
	r := newTestRelay(t, Config{})
	go func() { _ = r.Serve(context.Background()) }()
	defer r.Close()
	ctx := testCtx(t)
	ns := []string{"moqsframe", "cs", "room"}
	first := dial(t, r)
	defer first.Close()
	if err := first.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	second := dial(t, r)
	defer second.Close()
	pub, _ := second.Publish(ns, "commit")
	if err := second.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	sub := dial(t, r)
	defer sub.Close()
	subscribeAndExchange(ctx, t, sub, pub, ns, "commit")
	if m := r.Metrics(); m.AnnounceRefusedOwned+m.AnnounceRefusedReserved+m.AnnounceRefusedUnauthenticated+m.AnnounceTakeovers != 0 {
		t.Fatalf("metrics %+v", m)
	}
}

func TestRelayConfigSubscribeNeedsCertWithoutAnchor(t *testing.T) {
	tc, err := moq.DevTLSConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Addr: "127.0.0.1:0", TLS: tc, SubscribeNeedsCert: true}); err == nil {
		t.Fatal("SubscribeNeedsCert without TrustAnchor accepted")
	}
	p := newTestPKI(t)
	if _, err := New(Config{Addr: "127.0.0.1:0", TLS: tc, TrustAnchor: p.v, CSIdentity: "not a name"}); err == nil {
		t.Fatal("invalid CS identity accepted")
	}
}

func TestAnnounceOverlaps(t *testing.T) {
	cases := []struct {
		a, b []string
		want bool
	}{
		{[]string{"a", "b"}, []string{"a", "b"}, true},
		{[]string{"a"}, []string{"a", "b"}, true},
		{[]string{"a", "b", "c"}, []string{"a", "b"}, true},
		{[]string{"a", "b"}, []string{"a", "c"}, false},
		{[]string{"ab"}, []string{"a", "b"}, false},
		{[]string{"a/b"}, []string{"a", "b"}, false},
	}
	for _, c := range cases {
		if got := overlaps(c.a, c.b); got != c.want {
			t.Errorf("overlaps(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

func TestRefusedErrorMatchesUnauthorized(t *testing.T) {
	if !errors.Is(&RefusedError{Reason: ReasonOwned}, moq.ErrUnauthorized) {
		t.Error("owned does not match ErrUnauthorized")
	}
	if errors.Is(&RefusedError{Reason: ReasonInvalid}, moq.ErrUnauthorized) {
		t.Error("invalid matches ErrUnauthorized")
	}
}

func TestDefaultCSPrefixIsMoqforwards(t *testing.T) {
	if !slices.Equal(DefaultCSPrefix, moqforward.DefaultPrefix) {
		t.Fatalf("relay.DefaultCSPrefix %q != moqforward.DefaultPrefix %q", DefaultCSPrefix, moqforward.DefaultPrefix)
	}
}
