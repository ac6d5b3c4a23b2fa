package relay

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"testing"

	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/moq"
)

// newTreeRelay runs a relay named name (its certificate's identity, also
// presented to its upstreams) with mTLS against p's CA.
func newTreeRelay(t *testing.T, p *testPKI, name string, cfg Config) *Relay {
	t.Helper()
	c := p.cert(t, name, "127.0.0.1")
	cfg.Addr = "127.0.0.1:0"
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{c.TLS()}, MinVersion: tls.VersionTLS13}
	cfg.TrustAnchor = p.v
	cfg.UpstreamTLS = identity.ClientTLS(c, p.v)
	cfg.Logger = slog.New(slog.DiscardHandler)
	return serveRelay(t, cfg)
}

// tree is an origin and two edges below it.
type tree struct {
	origin, edge1, edge2 *Relay
}

func newTree(t *testing.T, p *testPKI) *tree {
	t.Helper()
	origin := newTreeRelay(t, p, "relay-origin", Config{RelayIdentities: []string{"relay-edge1", "relay-edge2"}})
	up := []Upstream{{Addr: origin.Addr().String()}}
	tr := &tree{
		origin: origin,
		edge1:  newTreeRelay(t, p, "relay-edge1", Config{Upstreams: up}),
		edge2:  newTreeRelay(t, p, "relay-edge2", Config{Upstreams: up}),
	}
	ctx := testCtx(t)
	waitFor(ctx, t, "edges connected upstream", func() bool {
		return tr.edge1.Metrics().Upstreams == 1 && tr.edge2.Metrics().Upstreams == 1
	})
	return tr
}

// A publisher on edge 1 reaches subscribers on both edges through one
// subscription per edge; the origin owns the namespace for the
// publisher's identity, not the edge's.
func TestRelayTreeInProcess(t *testing.T) {
	p := newTestPKI(t)
	tr := newTree(t, p)
	ctx := testCtx(t)
	ns := []string{"sg", "alice"}
	alice := dialAs(t, tr.edge1, p, p.cert(t, "alice"))
	pub, err := alice.Publish(ns, "video")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the announcement at the origin", func() bool { return tr.origin.Metrics().Announcements == 1 })

	var subs []*moq.Subscription
	for _, r := range []*Relay{tr.edge1, tr.edge1, tr.edge2, tr.edge2, tr.edge2} {
		sub, err := dialAs(t, r, p, nil).Subscribe(ctx, ns, "video")
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	// edge 1: 2 local subscribers + the origin; origin: edge 2; edge 2: 3.
	waitFor(ctx, t, "every hop attached", func() bool {
		return tr.edge1.Metrics().Subscribers == 3 && tr.origin.Metrics().Subscribers == 1 && tr.edge2.Metrics().Subscribers == 3
	})
	for g := uint64(0); g < 5; g++ {
		exchange(ctx, t, pub, g, subs...)
	}
	if n := pub.Subscribers(); n != 1 {
		t.Fatalf("the publisher serves %d subscriptions, want 1 (edge 1's)", n)
	}
	for name, want := range map[*Relay][2]int{tr.edge1: {1, 3}, tr.origin: {1, 1}, tr.edge2: {1, 3}} {
		if m := name.Metrics(); m.Tracks != want[0] || m.Subscribers != want[1] || m.ObjectsIn != 5 {
			t.Errorf("tracks %d subscribers %d objects in %d, want %v and 5", m.Tracks, m.Subscribers, m.ObjectsIn, want)
		}
	}
	m := tr.origin.Metrics()
	if m.AnnounceRefusedNotRelay != 0 || m.AnnounceRefusedOwned != 0 {
		t.Fatalf("origin refusals: %+v", m)
	}

	// Another identity announcing alice's namespace on edge 2: edge 2
	// accepts it locally (it has never seen alice), the origin refuses it
	// as owned by alice, and edge 2 withdraws it again.
	mallory := dialAs(t, tr.edge2, p, p.cert(t, "mallory"))
	if err := mallory.Announce(ctx, ns); err != nil {
		t.Fatalf("edge 2 refused locally: %v", err)
	}
	waitFor(ctx, t, "edge 2 to withdraw mallory's announcement", func() bool {
		m := tr.edge2.Metrics()
		return m.UpstreamAnnounceFailures == 1 && m.Announcements == 0
	})
	if m := tr.origin.Metrics(); m.AnnounceRefusedOwned != 1 {
		t.Fatalf("origin: %+v", m)
	}
	// Edge 2's subscribers still get alice's objects.
	exchange(ctx, t, pub, 5, subs...)

	// Alice herself may announce from edge 2 (a publisher that moved): the
	// origin sees the same identity and lets the new session take over.
	alice2 := dialAs(t, tr.edge2, p, p.cert(t, "alice"))
	if err := alice2.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the takeover at the origin", func() bool { return tr.origin.Metrics().AnnounceTakeovers == 1 })

	// When alice has left both edges, they withdraw her namespace upstream
	// (UNANNOUNCE) and it is free for another identity tree-wide.
	_ = alice.Close()
	_ = alice2.Close()
	waitFor(ctx, t, "the origin to forget alice's namespace", func() bool { return tr.origin.Metrics().Announcements == 0 })
	bob := dialAs(t, tr.edge1, p, p.cert(t, "bob"))
	if err := bob.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "bob's announcement at the origin", func() bool { return tr.origin.Metrics().Announcements == 1 })
	if m := tr.origin.Metrics(); m.AnnounceRefusedOwned != 1 {
		t.Fatalf("origin refused bob: %+v", m)
	}
	if m := tr.edge1.Metrics(); m.UpstreamAnnounceFailures != 0 || m.Announcements != 1 {
		t.Fatalf("edge 1: %+v", m)
	}
}

// Only configured relay identities may announce on behalf of someone
// else; what they forward is authorized as the named announcer.
func TestRelayRelayedAnnounceRules(t *testing.T) {
	p := newTestPKI(t)
	origin := newTreeRelay(t, p, "relay-origin", Config{RelayIdentities: []string{"relay-edge1"}})
	ctx := testCtx(t)
	bob := dialAs(t, origin, p, p.cert(t, "bob"))
	err := bob.AnnounceFor(ctx, []string{"sg", "alice"}, "alice")
	mustRefuse(t, err, "announce for alice by bob")
	edge := dialAs(t, origin, p, p.cert(t, "relay-edge1"))
	if err := edge.AnnounceFor(ctx, []string{"sg", "alice"}, "alice"); err != nil {
		t.Fatal(err)
	}
	// The CS prefix: only on behalf of the CS identity.
	mustRefuse(t, edge.AnnounceFor(ctx, []string{"moqsframe", "cs", "g"}, "alice"), "CS prefix for alice")
	if err := edge.AnnounceFor(ctx, []string{"moqsframe", "cs", "g"}, "cs"); err != nil {
		t.Fatal(err)
	}
	// Alice's namespace is alice's, whoever forwards: bob directly may not.
	mustRefuse(t, bob.Announce(ctx, []string{"sg", "alice", "x"}), "bob inside alice's namespace")
	if err := edge.AnnounceFor(ctx, []string{"sg", "bad"}, "no spaces allowed"); err == nil || errors.Is(err, moq.ErrUnauthorized) {
		t.Fatalf("invalid announcer name: %v", err)
	}
	m := origin.Metrics()
	if m.AnnounceRefusedNotRelay != 1 || m.AnnounceRefusedReserved != 1 || m.AnnounceRefusedOwned != 1 || m.AnnounceRefusedInvalid != 1 || m.Announcements != 2 {
		t.Fatalf("metrics %+v", m)
	}
}
