package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/moq"
)

func newTestRelay(t *testing.T, cfg Config) *Relay {
	t.Helper()
	tc, err := moq.DevTLSConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.TLS = tc
	cfg.Logger = slog.New(slog.DiscardHandler)
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func dial(t *testing.T, r *Relay) *moq.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := moq.Dial(ctx, r.Addr().String(), &moq.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRelayInProcessNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	r := newTestRelay(t, Config{})
	serveDone := make(chan error, 1)
	go func() { serveDone <- r.Serve(context.Background()) }()

	ns := []string{"sg", "epoch"}
	pubSess := dial(t, r)
	commit, err := pubSess.Publish(ns, "CommitTrack")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pubSess.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	subSess := dial(t, r)
	sub, err := subSess.Subscribe(ctx, ns, "CommitTrack")
	if err != nil {
		t.Fatal(err)
	}
	if err := commit.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// One object per message, group ID = epoch.
	for epoch := uint64(1); epoch <= 20; epoch++ {
		if err := commit.WriteObject(epoch, 0, 0, []byte{byte(epoch)}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[uint64]bool{}
	for len(got) < 20 {
		obj, err := sub.ReadObject(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(obj.Payload, []byte{byte(obj.GroupID)}) || obj.ObjectID != 0 {
			t.Fatalf("bad object %+v", obj)
		}
		got[obj.GroupID] = true
	}
	buf := metricsText(t, r.Metrics())
	for _, want := range []string{"moq_relay_objects_in_total 20\n", "moq_relay_objects_out_total 20\n", "# TYPE moq_relay_dropped_total counter\n"} {
		if !strings.Contains(buf, want) {
			t.Errorf("metrics lack %q:\n%s", want, buf)
		}
	}

	// Publisher leaves: the downstream subscription ends.
	_ = pubSess.Close()
	for {
		_, err := sub.ReadObject(ctx)
		if err != nil {
			if !errors.Is(err, moq.ErrSubscriptionEnded) {
				t.Fatalf("want ErrSubscriptionEnded after the publisher left, got %v", err)
			}
			break
		}
	}
	_ = subSess.Close()
	if err := r.Close(); err != nil && !errors.Is(err, io.EOF) {
		t.Logf("close: %v", err)
	}
	if err := <-serveDone; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutine leak: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// keepWriting writes objects 0, 1, 2... of group 0 at 1 kHz until the
// returned stop is called: an intra-refresh encoder that never starts a new
// group.
func keepWriting(t *testing.T, pub *moq.Publisher) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for id := uint64(0); ; id++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if err := pub.WriteObject(0, 0, id, []byte("frame")); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	return func() { close(done); <-exited }
}

// After the last downstream subscriber leaves (UNSUBSCRIBE or disconnect),
// the relay ends its upstream subscription after IdleTimeout even though
// the publisher keeps writing into the same group: the publisher is told
// (its subscriber count drops to 0 and nothing more goes out).
func TestRelayEndsIdleUpstreamWithinOneGroup(t *testing.T) {
	for _, leave := range []string{"unsubscribe", "disconnect"} {
		t.Run(leave, func(t *testing.T) {
			const idle = 200 * time.Millisecond
			r := newTestRelay(t, Config{IdleTimeout: idle})
			go func() { _ = r.Serve(context.Background()) }()
			defer r.Close()
			ns := []string{"sg", "idle"}
			pubSess := dial(t, r)
			defer pubSess.Close()
			pub, _ := pubSess.Publish(ns, "t")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := pubSess.Announce(ctx, ns); err != nil {
				t.Fatal(err)
			}
			subSess := dial(t, r)
			defer subSess.Close()
			sub, err := subSess.Subscribe(ctx, ns, "t")
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.WaitSubscribers(ctx, 1); err != nil {
				t.Fatal(err)
			}
			stop := keepWriting(t, pub)
			defer stop()
			for i := 0; i < 10; i++ {
				if o, err := sub.ReadObject(ctx); err != nil || o.GroupID != 0 {
					t.Fatalf("%+v %v", o, err)
				}
			}
			left := time.Now()
			if leave == "unsubscribe" {
				_ = sub.Close()
			} else {
				_ = subSess.Close()
			}
			waitFor(ctx, t, "the relay to detach the downstream subscriber", func() bool { return r.Metrics().Subscribers == 0 })
			waitFor(ctx, t, "the publisher to lose the relay's subscription", func() bool { return pub.Subscribers() == 0 })
			t.Logf("upstream ended %v after the subscriber left (idle timeout %v)", time.Since(left).Round(time.Millisecond), idle)
			if time.Since(left) < idle {
				t.Fatalf("upstream ended before the idle timeout")
			}
			out := pub.Stats().ObjectsOut
			in := pub.Stats().ObjectsIn
			waitFor(ctx, t, "more objects written", func() bool { return pub.Stats().ObjectsIn >= in+20 })
			if now := pub.Stats().ObjectsOut; now != out {
				t.Fatalf("publisher kept sending to the relay: %d -> %d objects out", out, now)
			}
			if m := r.Metrics(); m.Tracks != 0 || m.Subscribers != 0 || m.Disconnects != 0 {
				t.Fatalf("metrics after idle teardown %+v", m)
			}
		})
	}
}

// v0.5.0 tears a session down when it receives UNSUBSCRIBE for a request ID
// it already ended with SUBSCRIBE_DONE. Closing one track at the origin must
// not take the origin's other tracks down through the relay.
func TestOriginClosesOneTrackOthersSurvive(t *testing.T) {
	r := newTestRelay(t, Config{})
	go func() { _ = r.Serve(context.Background()) }()
	defer r.Close()
	ns := []string{"sg", "tracks"}
	pubSess := dial(t, r)
	defer pubSess.Close()
	a, _ := pubSess.Publish(ns, "a")
	b, _ := pubSess.Publish(ns, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := pubSess.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	subSess := dial(t, r)
	defer subSess.Close()
	subA, err := subSess.Subscribe(ctx, ns, "a")
	if err != nil {
		t.Fatal(err)
	}
	subB, err := subSess.Subscribe(ctx, ns, "b")
	if err != nil {
		t.Fatal(err)
	}
	_ = a.WaitSubscribers(ctx, 1)
	_ = b.WaitSubscribers(ctx, 1)
	_ = a.WriteObject(0, 0, 0, []byte("a0"))
	if _, err := subA.ReadObject(ctx); err != nil {
		t.Fatal(err)
	}
	_ = a.Close()
	if _, err := subA.ReadObject(ctx); !errors.Is(err, moq.ErrSubscriptionEnded) {
		t.Fatalf("track a: want ErrSubscriptionEnded, got %v", err)
	}
	// Wait until the relay has let go of track a upstream (any UNSUBSCRIBE
	// it sends the origin goes out then), before using track b.
	for r.Metrics().Tracks != 1 {
		if ctx.Err() != nil {
			t.Fatalf("the relay kept track a: %+v", r.Metrics())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for g := uint64(0); g < 5; g++ {
		if err := b.WriteObject(g, 0, 0, []byte("b")); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		if _, err := subB.ReadObject(ctx); err != nil {
			t.Fatalf("track b after closing a: %v (origin session done: %v)", err, pubSess.Stats())
		}
	}
	// The origin's control stream must still work: a new track through the
	// relay needs a new upstream SUBSCRIBE.
	c, _ := pubSess.Publish(ns, "c")
	subC, err := subSess.Subscribe(ctx, ns, "c")
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	defer wcancel()
	if err := c.WaitSubscribers(wctx, 1); err != nil {
		t.Fatalf("origin never saw the relay's SUBSCRIBE for c: %v", err)
	}
	_ = c.WriteObject(0, 0, 0, []byte("c"))
	if _, err := subC.ReadObject(ctx); err != nil {
		t.Fatal(err)
	}
}

// A subscriber that stops reading costs the relay at most
// SubscriberQueueBytes, whatever the object size: objects that would take
// its queue above the bound are dropped for it (counted as queue_bytes)
// while a fast subscriber gets everything, and the slow one, once it
// reads, gets exactly the objects that were not counted as dropped.
func TestRelaySlowSubscriberQueueByteBound(t *testing.T) {
	const (
		objSize = 16 << 10
		bound   = 128 << 10 // 8 objects; the object bound (1024) never bites
		total   = 300
	)
	// The slow subscriber's writer sits in a blocked stream write until the
	// test lets it read: no write timeout may end it meanwhile.
	r := newTestRelay(t, Config{MaxObjectSize: objSize, SubscriberQueueBytes: bound, WriteTimeout: 10 * time.Minute})
	go func() { _ = r.Serve(context.Background()) }()
	defer r.Close()
	ns := []string{"sg", "bytes"}
	pubSess := dial(t, r)
	defer pubSess.Close()
	pub, _ := pubSess.Publish(ns, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := pubSess.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	fastSess := dial(t, r)
	// The slow subscriber's session buffers one object for its reader, so
	// backpressure reaches the relay after the library's credit (64
	// objects) and QUIC's flow-control windows.
	slowSess, err := moq.Dial(ctx, r.Addr().String(), &moq.Config{InsecureSkipVerify: true, SubscriptionQueue: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer fastSess.Close()
	defer slowSess.Close()
	fast, err := fastSess.Subscribe(ctx, ns, "t")
	if err != nil {
		t.Fatal(err)
	}
	slow, err := slowSess.Subscribe(ctx, ns, "t")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "both subscribers attached", func() bool { return r.Metrics().Subscribers == 2 })
	payload := func(i uint64) []byte {
		b := bytes.Repeat([]byte{byte(i)}, objSize)
		b[1] = byte(i >> 8)
		return b
	}
	// Lockstep with the fast subscriber, so only the slow one can fall behind.
	for i := uint64(0); i < total; i++ {
		if err := pub.WriteObject(i/10, 0, i%10, payload(i)); err != nil {
			t.Fatal(err)
		}
		o, err := fast.ReadObject(ctx)
		if err != nil {
			t.Fatalf("fast subscriber at %d: %v", i, err)
		}
		if o.GroupID*10+o.ObjectID != i || !bytes.Equal(o.Payload, payload(i)) {
			t.Fatalf("fast subscriber: object %d/%d at %d", o.GroupID, o.ObjectID, i)
		}
	}
	m := r.Metrics()
	t.Logf("slow subscriber: %d of %d objects dropped by the byte bound, peak queue %d of %d bytes",
		m.DroppedQueueBytes, total, m.PeakQueuedBytes, bound)
	if m.DroppedQueueBytes == 0 || m.DroppedQueueFull != 0 {
		t.Fatalf("want drops by the byte bound only: %+v", m)
	}
	if m.PeakQueuedBytes > bound || m.PeakQueuedBytes <= bound-objSize {
		t.Fatalf("peak queue %d bytes, want in (%d, %d]", m.PeakQueuedBytes, bound-objSize, bound)
	}
	text := metricsText(t, m)
	for _, want := range []string{
		fmt.Sprintf("moq_relay_dropped_total{reason=\"queue_bytes\"} %d\n", m.DroppedQueueBytes),
		fmt.Sprintf("moq_relay_subscriber_queue_peak_bytes %d\n", m.PeakQueuedBytes),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Nothing lost silently: the slow subscriber gets every object not
	// counted as dropped, intact (groups may interleave: v0.5.0 bug #5).
	want := total - int(m.DroppedQueueBytes)
	seen := map[uint64]bool{}
	for len(seen) < want {
		o, err := slow.ReadObject(ctx)
		if err != nil {
			t.Fatalf("slow subscriber after %d of %d: %v", len(seen), want, err)
		}
		i := o.GroupID*10 + o.ObjectID
		if seen[i] || !bytes.Equal(o.Payload, payload(i)) {
			t.Fatalf("slow subscriber: object %d duplicate or corrupt", i)
		}
		seen[i] = true
	}
	if st := slow.Stats(); st.Dropped != 0 {
		t.Fatalf("the slow subscriber's session lost objects: %+v", st)
	}
	if m := r.Metrics(); m.Disconnects != 0 {
		t.Fatalf("slow subscriber disconnected: %+v", m)
	}
}
