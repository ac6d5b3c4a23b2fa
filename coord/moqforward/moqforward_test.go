package moqforward

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/moq"
	"github.com/moqsframe/moqsframe/relay"
)

func startRelay(t *testing.T, addr string) *relay.Relay {
	t.Helper()
	tc, err := moq.DevTLSConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	// A restarted relay reuses its port, which the closed one may release
	// late: retry briefly.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := relay.New(relay.Config{Addr: addr, TLS: tc, Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			go r.Serve(context.Background())
			return r
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestForwarderThroughRelay(t *testing.T) {
	r := startRelay(t, "127.0.0.1:0")
	addr := r.Addr().String()
	f, err := New(Config{Relay: addr, Prefix: []string{"p"}, MoQ: moq.Config{InsecureSkipVerify: true},
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	sess, err := moq.Dial(ctx, addr, &moq.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	// Subscribing works before the group has any item (prefix announce).
	subs := map[string]*moq.Subscription{}
	for _, tr := range []string{TrackCommit, TrackWelcome, TrackRequest, TrackAck} {
		if subs[tr], err = sess.Subscribe(ctx, Namespace([]string{"p"}, "room"), tr); err != nil {
			t.Fatal(err)
		}
	}
	// The relay's upstream subscription is set up after the downstream
	// SUBSCRIBE_OK: write until the first object arrives.
	want := map[string]uint64{TrackCommit: 3, TrackWelcome: 3, TrackRequest: 7, TrackAck: 3}
	for tr, sub := range subs {
		got := make(chan moq.Object, 1)
		go func() {
			o, err := sub.ReadObject(ctx)
			if err == nil {
				got <- o
			}
		}()
	wait:
		for {
			switch tr {
			case TrackCommit:
				err = f.ForwardCommit(ctx, "room", 3, []byte("commit"))
			case TrackWelcome:
				err = f.ForwardWelcome(ctx, "room", 3, []byte("welcome"))
			case TrackRequest:
				err = f.ForwardRequest(ctx, "room", 7, []byte("request"))
			case TrackAck:
				err = f.ForwardAck(ctx, "room", 3, 1, []byte("ack"))
			}
			if err != nil {
				t.Fatal(err)
			}
			select {
			case o := <-got:
				// Acks of one epoch are numbered in arrival order.
				if o.GroupID != want[tr] || (o.ObjectID != 0 && tr != TrackAck) || string(o.Payload) != tr {
					t.Fatalf("%s: got group %d object %d %q", tr, o.GroupID, o.ObjectID, o.Payload)
				}
				break wait
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				t.Fatalf("%s: no object", tr)
			}
		}
	}

	// Relay restart: Forward fails while down, then the forwarder reconnects.
	r.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f.ForwardCommit(ctx, "room", 4, []byte("x"))
		if errors.Is(err, ErrNotConnected) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("forwarder did not notice the relay went away (last err %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r2 := startRelay(t, addr)
	defer r2.Close()
	if err := f.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if f.Connects() < 2 {
		t.Fatalf("connects = %d", f.Connects())
	}
}

// A relay that requires mutual TLS with the deployment CA admits the
// forwarder that presents the CS's certificate and verifies the relay with
// that CA; a session without a client certificate is refused.
func TestForwarderMutualTLS(t *testing.T) {
	ca, err := identity.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier([]*x509.Certificate{ca.Certificate})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name string, hosts ...string) *identity.Certificate {
		c, k, err := ca.Issue(name, identity.IssueOptions{Hosts: hosts})
		if err != nil {
			t.Fatal(err)
		}
		return &identity.Certificate{Chain: [][]byte{c.Raw}, Leaf: c, Key: k}
	}
	r, err := relay.New(relay.Config{Addr: "127.0.0.1:0", TLS: identity.ServerTLS(issue("relay", "127.0.0.1"), v, nil),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(context.Background())
	defer r.Close()
	addr := r.Addr().String()

	if _, err := New(Config{Relay: addr, RelayRoots: v.Roots(), MoQ: moq.Config{InsecureSkipVerify: true}}); err == nil {
		t.Fatal("RelayRoots with InsecureSkipVerify accepted")
	}
	f, err := New(Config{Relay: addr, Certificate: issue("cs"), RelayRoots: v.Roots(),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.ForwardCommit(ctx, "room", 0, []byte("c")); err != nil {
		t.Fatal(err)
	}
	if s, err := moq.Dial(ctx, addr, &moq.Config{TLSConfig: identity.ClientTLS(nil, v), HandshakeTimeout: 3 * time.Second}); err == nil {
		s.Close()
		t.Fatal("relay accepted a session without a client certificate")
	}
}
