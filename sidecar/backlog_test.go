package sidecar

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/moq"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// subscribedPublisher serves pub on a loopback MoQ session and returns a
// subscription to it, so the publisher has one real subscriber.
func subscribedPublisher(t *testing.T, pub *moq.Publisher) *moq.Subscription {
	t.Helper()
	tlsConf, err := moq.DevTLSConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := moq.Listen("127.0.0.1:0", tlsConf, &moq.Config{
		OnSubscribe: func(*moq.Session, []string, string) (*moq.Publisher, error) { return pub, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			if _, err := ln.Accept(context.Background()); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sess, err := moq.Dial(ctx, ln.Addr().String(), &moq.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	sub, err := sess.Subscribe(ctx, pub.Namespace(), pub.Track())
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	return sub
}

func readIDs(t *testing.T, sub *moq.Subscription, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ids []string
	for range n {
		o, err := sub.ReadObject(ctx)
		if err != nil {
			t.Fatalf("after %v: %v", ids, err)
		}
		ids = append(ids, fmt.Sprintf("%d/%02d:%s", o.GroupID, o.ObjectID, o.Payload))
	}
	// MoQ carries each group on its own stream: only the order within a
	// group is kept, which the publisher's stream per group guarantees.
	slices.Sort(ids)
	return ids
}

// TestBacklogReplaysAfterLoss: objects written while the session is lost
// are held, and on resume the relay gets, in order, everything written
// since replayFrom (some of it again); objects evicted while held and
// written after replayFrom are counted unpublished.
func TestBacklogReplaysAfterLoss(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	pub := moq.NewPublisher([]string{"ns"}, "video", &moq.Config{})
	defer pub.Close()
	sub := subscribedPublisher(t, pub)
	unpublished := 0
	b := newBacklog(pub, ReconnectBuffer{MaxAge: 10 * time.Second, MaxBytes: 1 << 20}, clock.now, func() { unpublished++ })
	write := func(g, o uint64) {
		t.Helper()
		if err := b.write(moq.Object{GroupID: g, ObjectID: o, Payload: []byte(fmt.Sprint(g*100 + o))}); err != nil {
			t.Fatal(err)
		}
		clock.add(time.Second)
	}
	for o := range 4 { // t = 0..3 s: live, delivered
		write(0, uint64(o))
	}
	if got, want := fmt.Sprint(readIDs(t, sub, 4)), "[0/00:0 0/01:1 0/02:2 0/03:3]"; got != want {
		t.Fatalf("live: %s, want %s", got, want)
	}
	// Noticed at t = 4 s with a 2 s margin: objects from t = 2 s on may
	// not have reached the relay.
	b.lost(2 * time.Second)
	for o := range 3 { // t = 4..6 s: held
		write(1, uint64(o))
	}
	b.resume(context.Background()) // the subscriber is still there
	write(1, 3)
	got := fmt.Sprint(readIDs(t, sub, 6))
	if want := "[0/02:2 0/03:3 1/00:100 1/01:101 1/02:102 1/03:103]"; got != want {
		t.Fatalf("after resume: %s, want %s", got, want)
	}
	if unpublished != 0 {
		t.Fatalf("unpublished %d, want 0", unpublished)
	}

	// A long outage: at t = 8 s the session is lost again (margin 1 s:
	// replay from t = 7 s, the object 1/3); 20 s of holding evicts
	// everything older than 10 s.
	b.lost(time.Second)
	for o := range 20 { // t = 8..27 s
		write(2, uint64(o))
	}
	// Evicted while held: 1/3 (t = 7) and 2/0..2/8 (t = 8..16); 2/9
	// (t = 17) is exactly 10 s old at the last write (t = 27), and kept
	// until the resume at t = 28.
	if unpublished != 10 {
		t.Fatalf("unpublished %d after a long outage, want 10", unpublished)
	}
	b.resume(context.Background())
	if unpublished != 11 {
		t.Fatalf("unpublished %d after resuming, want 11", unpublished)
	}
	got = fmt.Sprint(readIDs(t, sub, 10))
	if want := "[2/10:210 2/11:211 2/12:212 2/13:213 2/14:214 2/15:215 2/16:216 2/17:217 2/18:218 2/19:219]"; got != want {
		t.Fatalf("after the long outage: %s, want %s", got, want)
	}
}

// TestBacklogBoundsBytes: the byte bound evicts the oldest objects.
func TestBacklogBoundsBytes(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	pub := moq.NewPublisher([]string{"ns"}, "video", &moq.Config{})
	defer pub.Close()
	unpublished := 0
	b := newBacklog(pub, ReconnectBuffer{MaxAge: time.Hour, MaxBytes: 1000}, clock.now, func() { unpublished++ })
	b.subscribedAt = clock.now() // as if the relay had been subscribed
	b.lost(time.Minute)
	for o := range 25 {
		b.write(moq.Object{ObjectID: uint64(o), Payload: make([]byte, 100)})
	}
	if b.bytes > 1000 || len(b.ring)-b.head != 10 {
		t.Fatalf("kept %d objects, %d bytes; want 10 objects within 1000 bytes", len(b.ring)-b.head, b.bytes)
	}
	if unpublished != 15 {
		t.Fatalf("unpublished %d, want 15", unpublished)
	}
	if len(b.ring) > 20 {
		t.Fatalf("ring holds %d slots for 10 objects: not compacted", len(b.ring))
	}
}
