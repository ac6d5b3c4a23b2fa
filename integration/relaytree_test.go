package integration

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/moq"
)

// treePKI writes a CA and certificates for the given names (with 127.0.0.1
// for relays) into a temporary directory.
type treePKI struct {
	dir string
	v   *identity.Verifier
	ca  *identity.CA
}

func newTreePKI(t *testing.T) *treePKI {
	t.Helper()
	ca, err := identity.NewCA("tree-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &treePKI{dir: t.TempDir(), ca: ca}
	if err := ca.WriteCA(p.dir); err != nil {
		t.Fatal(err)
	}
	if p.v, err = identity.NewVerifier([]*x509.Certificate{ca.Certificate}); err != nil {
		t.Fatal(err)
	}
	return p
}

// relayArgs issues name a relay certificate and returns the flags that
// make it an mTLS relay with it.
func (p *treePKI) relayArgs(t *testing.T, name string) []string {
	t.Helper()
	c, k, err := p.ca.Issue(name, identity.IssueOptions{Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteIdentity(p.dir, name, c, k); err != nil {
		t.Fatal(err)
	}
	return []string{"-trust-anchor", filepath.Join(p.dir, "ca.pem"),
		"-cert", filepath.Join(p.dir, name+".pem"), "-key", filepath.Join(p.dir, name+".key"), "-log-level", "warn"}
}

func (p *treePKI) member(t *testing.T, name string) *identity.Certificate {
	t.Helper()
	c, k, err := p.ca.Issue(name, identity.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &identity.Certificate{Chain: [][]byte{c.Raw}, Leaf: c, Key: k}
}

// waitMetrics polls r's /metrics until cond holds.
func (r *relayProc) waitMetrics(t *testing.T, ctx context.Context, what string, cond func(m map[string]uint64) bool) map[string]uint64 {
	t.Helper()
	for {
		m := r.metrics(t)
		if cond(m) {
			return m
		}
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s; metrics %v", what, m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// receiveRange reads objects [lo, hi) of a track written as index i ->
// (group i/30, object i%30) and checks each byte-exact, once.
func receiveRange(ctx context.Context, sub *moq.Subscription, track int, lo, hi uint64, size int) error {
	seen := make(map[uint64]bool, hi-lo)
	for uint64(len(seen)) < hi-lo {
		o, err := sub.ReadObject(ctx)
		if err != nil {
			return fmt.Errorf("after %d of %d objects: %w", len(seen), hi-lo, err)
		}
		i := o.GroupID*30 + o.ObjectID
		if i < lo || i >= hi || seen[i] {
			return fmt.Errorf("object %d outside [%d, %d) or duplicate", i, lo, hi)
		}
		if !bytes.Equal(o.Payload, payloadFor(track, o.GroupID, o.ObjectID, size)) {
			return fmt.Errorf("object %d: payload mismatch", i)
		}
		seen[i] = true
	}
	return nil
}

// treeSubscriber is one of the 50 subscribers: a session to an edge and a
// subscription per track.
type treeSubscriber struct {
	edge int // 1 or 2
	sess *moq.Session
	subs []*moq.Subscription
}

// An origin relay and two edge relays as processes, all with mTLS. A
// publisher on edge 1, 50 subscribers over both edges, two tracks: nothing
// is lost, the publisher serves one subscription per track (edge 1's), the
// origin exactly one per track (edge 2's) plus one upstream per track (to
// edge 1). Killing edge 2 (SIGKILL) affects only its subscribers, who
// reconnect to edge 1; edge 1's subscribers lose nothing and the publisher
// still serves one subscription per track.
func TestRelayTree(t *testing.T) {
	const (
		nSubs = 50
		phase = 300 // objects per track per phase
		size  = 1200
	)
	tracks := []string{"video", "audio"}
	pki := newTreePKI(t)
	origin := startRelay(t, append(pki.relayArgs(t, "relay-origin"), "-relay-identity", "relay-edge1,relay-edge2")...)
	edges := []*relayProc{
		startRelay(t, append(pki.relayArgs(t, "relay-edge1"), "-upstream", origin.addr)...),
		startRelay(t, append(pki.relayArgs(t, "relay-edge2"), "-upstream", origin.addr)...),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	t.Logf("origin %s, edge 1 %s, edge 2 %s", origin.addr, edges[0].addr, edges[1].addr)
	for _, e := range edges {
		e.waitMetrics(t, ctx, "the edge's upstream session", func(m map[string]uint64) bool { return m["moq_relay_upstreams"] == 1 })
	}

	ns := []string{"sg", "alice"}
	alice := dial(t, edges[0].addr, &moq.Config{TLSConfig: identity.ClientTLS(pki.member(t, "alice"), pki.v)})
	pubs := publishAndAnnounce(t, alice, ns, tracks...)
	origin.waitMetrics(t, ctx, "alice's announcement at the origin", func(m map[string]uint64) bool { return m["moq_relay_announcements"] == 1 })

	subscribe := func(s *treeSubscriber) {
		t.Helper()
		s.sess = dial(t, edges[s.edge-1].addr, &moq.Config{
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		s.subs = nil
		for _, tr := range tracks {
			sub, err := s.sess.Subscribe(ctx, ns, tr)
			if err != nil {
				t.Fatal(err)
			}
			s.subs = append(s.subs, sub)
		}
	}
	subs := make([]*treeSubscriber, nSubs)
	for i := range subs {
		subs[i] = &treeSubscriber{edge: 1 + i%2}
		subscribe(subs[i])
	}
	nt := uint64(len(tracks))
	// Every hop attached before anything is written (there is no cache).
	edges[0].waitMetrics(t, ctx, "edge 1: 25 subscribers and the origin per track", func(m map[string]uint64) bool {
		return m["moq_relay_subscribers"] == (nSubs/2+1)*nt
	})
	origin.waitMetrics(t, ctx, "origin: edge 2 per track", func(m map[string]uint64) bool {
		return m["moq_relay_subscribers"] == nt && m["moq_relay_tracks"] == nt
	})
	edges[1].waitMetrics(t, ctx, "edge 2: 25 subscribers per track", func(m map[string]uint64) bool {
		return m["moq_relay_subscribers"] == nSubs/2*nt && m["moq_relay_tracks"] == nt
	})
	for _, p := range pubs {
		if n := p.Subscribers(); n != 1 {
			t.Fatalf("publisher serves %d subscriptions of %s, want 1 (edge 1)", n, p.Track())
		}
	}

	write := func(lo, hi uint64) {
		for i := lo; i < hi; i++ {
			for tr, p := range pubs {
				if err := p.WriteObject(i/30, 0, i%30, payloadFor(tr, i/30, i%30, size)); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}
	receive := func(who []*treeSubscriber, lo, hi uint64) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, len(who)*len(tracks))
		for i, s := range who {
			for tr, sub := range s.subs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := receiveRange(ctx, sub, tr, lo, hi, size); err != nil {
						errs <- fmt.Errorf("subscriber %d (edge %d) track %s: %w", i, s.edge, tracks[tr], err)
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}

	// Phase 1: everyone gets everything.
	go write(0, phase)
	receive(subs, 0, phase)
	om, e1, e2 := origin.metrics(t), edges[0].metrics(t), edges[1].metrics(t)
	t.Logf("phase 1 (%d objects x %d tracks, %d B): objects in/out: edge 1 %d/%d, origin %d/%d, edge 2 %d/%d; subscriptions at the origin %d (tracks %d), at edge 1 %d, at edge 2 %d; publisher serves %d per track",
		phase, nt, size, e1["moq_relay_objects_in_total"], e1["moq_relay_objects_out_total"], om["moq_relay_objects_in_total"], om["moq_relay_objects_out_total"],
		e2["moq_relay_objects_in_total"], e2["moq_relay_objects_out_total"], om["moq_relay_subscribers"], om["moq_relay_tracks"],
		e1["moq_relay_subscribers"], e2["moq_relay_subscribers"], pubs[0].Subscribers())
	for name, c := range map[string][3]uint64{
		// name: objects in, objects out, drops
		"edge 1": {e1["moq_relay_objects_in_total"], e1["moq_relay_objects_out_total"], e1[`moq_relay_dropped_total{reason="queue_full"}`] + e1[`moq_relay_dropped_total{reason="queue_bytes"}`]},
		"origin": {om["moq_relay_objects_in_total"], om["moq_relay_objects_out_total"], om[`moq_relay_dropped_total{reason="queue_full"}`] + om[`moq_relay_dropped_total{reason="queue_bytes"}`]},
		"edge 2": {e2["moq_relay_objects_in_total"], e2["moq_relay_objects_out_total"], e2[`moq_relay_dropped_total{reason="queue_full"}`] + e2[`moq_relay_dropped_total{reason="queue_bytes"}`]},
	} {
		fanOut := map[string]uint64{"edge 1": nSubs/2 + 1, "origin": 1, "edge 2": nSubs / 2}[name]
		if c[0] != phase*nt || c[1] != phase*nt*fanOut || c[2] != 0 {
			t.Errorf("%s: objects in %d, out %d, dropped %d; want %d, %d, 0", name, c[0], c[1], c[2], phase*nt, phase*nt*fanOut)
		}
	}
	if om["moq_relay_announce_refused_total{reason=\"owned\"}"]+om["moq_relay_announce_refused_total{reason=\"not_relay\"}"] != 0 {
		t.Errorf("origin refused announcements: %v", om)
	}

	// Edge 2 crashes (SIGKILL: no CONNECTION_CLOSE). Its subscribers
	// reconnect to edge 1. How soon a client notices a silent crash is its
	// QUIC idle timeout (30 s by default), not the relay's business, so the
	// test closes their sessions as a client with a health check would.
	// Edge 1's own subscribers must not be affected.
	edges[1].Kill()
	var moved, stayed []*treeSubscriber
	for _, s := range subs {
		if s.edge == 1 {
			stayed = append(stayed, s)
			continue
		}
		_ = s.sess.Close()
		for _, sub := range s.subs {
			if _, err := sub.ReadObject(ctx); !errors.Is(err, moq.ErrSessionClosed) && !errors.Is(err, moq.ErrSubscriptionEnded) {
				t.Fatalf("edge 2 subscriber after the crash: %v", err)
			}
		}
		s.edge = 1
		subscribe(s)
		moved = append(moved, s)
	}
	edges[0].waitMetrics(t, ctx, "edge 1: all 50 subscribers and the origin per track", func(m map[string]uint64) bool {
		return m["moq_relay_subscribers"] == (nSubs+1)*nt
	})

	// Phase 2: edge 1's subscribers continue without a gap; the moved ones
	// get everything written after they resubscribed.
	go write(phase, 2*phase)
	receive(append(stayed, moved...), phase, 2*phase)
	e1 = edges[0].metrics(t)
	t.Logf("phase 2 after killing edge 2: edge 1 objects in/out %d/%d, subscribers %d, disconnects %d, drops %d",
		e1["moq_relay_objects_in_total"], e1["moq_relay_objects_out_total"], e1["moq_relay_subscribers"],
		e1["moq_relay_subscriber_disconnects_total"], e1[`moq_relay_dropped_total{reason="queue_full"}`]+e1[`moq_relay_dropped_total{reason="queue_bytes"}`])
	if e1["moq_relay_subscriber_disconnects_total"] != 0 || e1[`moq_relay_dropped_total{reason="queue_full"}`]+e1[`moq_relay_dropped_total{reason="queue_bytes"}`] != 0 ||
		e1["moq_relay_objects_in_total"] != 2*phase*nt {
		t.Errorf("edge 1 was affected by edge 2's crash: %v", e1)
	}
	for _, p := range pubs {
		if n := p.Subscribers(); n != 1 {
			t.Errorf("publisher serves %d subscriptions of %s after the crash, want 1", n, p.Track())
		}
	}
}
