package moq

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go/quicvarint"
)

// announceMsg is a draft-11 ANNOUNCE as v0.5.0 writes it (no parameters),
// plus the announcer parameter if announcer is not "".
func announceMsg(reqID uint64, namespace []string, announcer string) []byte {
	p := quicvarint.Append(nil, reqID)
	p = quicvarint.Append(p, uint64(len(namespace)))
	for _, e := range namespace {
		p = quicvarint.Append(p, uint64(len(e)))
		p = append(p, e...)
	}
	if announcer == "" {
		p = quicvarint.Append(p, 0)
	} else {
		p = quicvarint.Append(p, 1)
		p = quicvarint.Append(p, AnnouncerParameter)
		p = quicvarint.Append(p, uint64(len(announcer)))
		p = append(p, announcer...)
	}
	return ctlMsg(msgTypeAnnounce, p)
}

func TestAddAnnounceParameter(t *testing.T) {
	ns := []string{"example.org", "room"}
	out, gotNS, ok := addAnnounceParameter(announceMsg(9, ns, ""), AnnouncerParameter, []byte("alice"))
	if !ok || !slices.Equal(gotNS, ns) {
		t.Fatalf("ok %v namespace %q", ok, gotNS)
	}
	if want := announceMsg(9, ns, "alice"); !bytes.Equal(out, want) {
		t.Fatalf("got %x\nwant %x", out, want)
	}
	_, payload, _ := splitControl(out)
	f, ok := parseAnnounce(payload)
	if !ok || !f.has || f.announcer != "alice" || f.requestID != 9 || f.params != 1 {
		t.Fatalf("parsed %+v %v", f, ok)
	}
	// Not an ANNOUNCE, truncated, or trailing bytes: left alone.
	for _, bad := range [][]byte{ctlMsg(0x03, []byte{1, 2}), announceMsg(9, ns, "")[:5], append(announceMsg(9, ns, ""), 0)} {
		if _, _, ok := addAnnounceParameter(bad, AnnouncerParameter, []byte("x")); ok {
			t.Errorf("rewrote %x", bad)
		}
	}
}

// FuzzParseAnnounce: peer-supplied ANNOUNCE payloads never panic, and
// whatever parses keeps parsing, with the announcer, after the parameter
// is added.
func FuzzParseAnnounce(f *testing.F) {
	f.Add(announceMsg(1, []string{"a"}, "")[3:])
	f.Add(announceMsg(2, []string{"a", "b"}, "relay")[3:])
	f.Add([]byte{0x00, 0x01, 0x40, 0xff})
	f.Fuzz(func(t *testing.T, payload []byte) {
		fields, ok := parseAnnounce(payload)
		if !ok || len(payload) > 1000 {
			return
		}
		msg := ctlMsg(msgTypeAnnounce, payload)
		out, ns, ok := addAnnounceParameter(msg, AnnouncerParameter, []byte("name"))
		if !ok {
			t.Fatal("a parsed ANNOUNCE could not take a parameter")
		}
		if !slices.Equal(ns, fields.namespace) {
			t.Fatalf("namespace %q, parsed %q", ns, fields.namespace)
		}
		_, p, _ := splitControl(out)
		g, ok := parseAnnounce(p)
		if !ok || !g.has || g.announcer != "name" || g.params != fields.params+1 || g.requestID != fields.requestID {
			t.Fatalf("after adding: %+v %v", g, ok)
		}
	})
}

// AnnounceFor's announcer reaches the peer's OnRelayedAnnounce; a plain
// Announce goes to OnAnnounce; a peer without OnRelayedAnnounce sees
// AnnounceFor as a plain ANNOUNCE.
func TestAnnounceForCarriesAnnouncer(t *testing.T) {
	var mu sync.Mutex
	var got []string
	cfg := &Config{
		OnAnnounce: func(_ *Session, ns []string) error {
			mu.Lock()
			got = append(got, "plain:"+ns[0])
			mu.Unlock()
			return nil
		},
		OnRelayedAnnounce: func(_ *Session, ns []string, announcer string) error {
			mu.Lock()
			got = append(got, "relayed:"+ns[0]+":"+announcer)
			mu.Unlock()
			return nil
		},
	}
	p := newPair(t, cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, name := range []string{"alice", "bob", "carol"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.client.AnnounceFor(ctx, []string{string(rune('a' + i))}, name); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := p.client.Announce(ctx, []string{"d"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	slices.Sort(got)
	want := []string{"plain:d", "relayed:a:alice", "relayed:b:bob", "relayed:c:carol"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	mu.Unlock()

	plainOnly := newPair(t, &Config{OnAnnounce: cfg.OnAnnounce}, nil)
	if err := plainOnly.client.AnnounceFor(ctx, []string{"e"}, "alice"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got[len(got)-1] != "plain:e" {
		t.Fatalf("a peer without OnRelayedAnnounce: %q", got)
	}
}

// Unannounce works around v0.5.0's inverted Unannounce; the receiving
// filter drops an UNANNOUNCE for a namespace the peer never announced
// (which would stop v0.5.0's control loop) and the session keeps working.
func TestUnannounce(t *testing.T) {
	gone := make(chan string, 4)
	p := newPair(t, &Config{
		OnAnnounce:   func(*Session, []string) error { return nil },
		OnUnannounce: func(_ *Session, ns []string) { gone <- ns[0] },
	}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 { // announced twice: one UNANNOUNCE withdraws it
		if err := p.client.Announce(ctx, []string{"a"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.client.Unannounce(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	select {
	case ns := <-gone:
		if ns != "a" {
			t.Fatalf("unannounced %q", ns)
		}
	case <-ctx.Done():
		t.Fatal("UNANNOUNCE not delivered")
	}
	// Never announced: sent by v0.5.0, dropped by the peer's filter.
	if err := p.client.Unannounce(ctx, []string{"never"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the stale UNANNOUNCE to be dropped", func() bool { return p.server.Stats().StaleUnannounces == 1 })
	// The server's control loop still runs.
	if err := p.client.Announce(ctx, []string{"b"}); err != nil {
		t.Fatalf("server stopped handling ANNOUNCE: %v", err)
	}
	if err := p.client.Unannounce(ctx, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	select {
	case ns := <-gone:
		if ns != "b" {
			t.Fatalf("unannounced %q", ns)
		}
	case <-ctx.Done():
		t.Fatal("second UNANNOUNCE not delivered")
	}
}
