package moqforward

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

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
