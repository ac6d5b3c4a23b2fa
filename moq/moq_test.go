package moq

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
)

// pair is a connected client/server session pair on loopback.
type pair struct {
	ln             *Listener
	client, server *Session
}

func newPair(t *testing.T, serverCfg, clientCfg *Config) *pair {
	t.Helper()
	return newPairTB(t, serverCfg, clientCfg)
}

func newPairB(b *testing.B) *pair { return newPairTB(b, nil, nil) }

func newPairTB(t testing.TB, serverCfg, clientCfg *Config) *pair {
	t.Helper()
	return newPairVia(t, serverCfg, clientCfg, nil)
}

// newPairVia is newPairTB with the client dialling via(server address)
// instead of the server itself (a proxy), if via is not nil.
func newPairVia(t testing.TB, serverCfg, clientCfg *Config, via func(net.Addr) string) *pair {
	t.Helper()
	tc, err := DevTLSConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0", tc, serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		s   *Session
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := ln.Accept(ctx)
		ch <- res{s, err}
	}()
	if clientCfg == nil {
		clientCfg = &Config{}
	}
	clientCfg.InsecureSkipVerify = true
	addr := ln.Addr().String()
	if via != nil {
		addr = via(ln.Addr())
	}
	c, err := Dial(ctx, addr, clientCfg)
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	p := &pair{ln: ln, client: c, server: r.s}
	t.Cleanup(p.close)
	return p
}

// subscribed publishes track on the server, subscribes to it from the
// client and waits until the publisher has the subscriber.
func (p *pair) subscribed(ctx context.Context, t *testing.T, track string) (*Publisher, *Subscription) {
	t.Helper()
	pub, err := p.server.Publish(ns, track)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := p.client.Subscribe(ctx, ns, track)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	return pub, sub
}

func (p *pair) close() {
	_ = p.client.Close()
	_ = p.server.Close()
	_ = p.ln.Close()
}

// payloadFor is a deterministic payload of n bytes for object (g, o).
func payloadFor(g, o uint64, n int) []byte {
	out := make([]byte, 0, n+32)
	var seed [16]byte
	binary.BigEndian.PutUint64(seed[:8], g)
	binary.BigEndian.PutUint64(seed[8:], o)
	h := sha256.Sum256(seed[:])
	for len(out) < n {
		out = append(out, h[:]...)
		h = sha256.Sum256(h[:])
	}
	return out[:n]
}

// goroutineBaseline returns a func that fails t if goroutines leaked.
func goroutineBaseline(t *testing.T) func() {
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			now := runtime.NumGoroutine()
			if now <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Fatalf("goroutine leak: %d before, %d after\n%s", before, now, buf[:n])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

var ns = []string{"example.org", "room1"}

// writeObjects writes total objects of payloadFor(group, object, size),
// perGroup to a group.
func writeObjects(t *testing.T, pub *Publisher, total, perGroup, size uint64) {
	for i := range total {
		g, o := i/perGroup, i%perGroup
		if err := pub.WriteObject(g, 0, o, payloadFor(g, o, int(size))); err != nil {
			t.Error(err)
			return
		}
	}
}

func TestDirect2000ObjectsNoLoss(t *testing.T) {
	check := goroutineBaseline(t)
	p := newPair(t, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pub, sub := p.subscribed(ctx, t, "video")
	const total, perGroup, size = 2000, 50, 1200
	go writeObjects(t, pub, total, perGroup, size)
	seen := map[[2]uint64]bool{}
	for len(seen) < total {
		obj, err := sub.ReadObject(ctx)
		if err != nil {
			t.Fatalf("after %d objects: %v", len(seen), err)
		}
		k := [2]uint64{obj.GroupID, obj.ObjectID}
		if seen[k] {
			t.Fatalf("duplicate object %v", k)
		}
		seen[k] = true
		if !bytes.Equal(obj.Payload, payloadFor(obj.GroupID, obj.ObjectID, size)) {
			t.Fatalf("payload mismatch for %v", k)
		}
	}
	st := sub.Stats()
	if st.Objects != total || st.Bytes != total*size || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	ps := pub.Stats()
	if ps.ObjectsOut != total || ps.Dropped != 0 {
		t.Fatalf("publisher stats %+v", ps)
	}
	t.Logf("subscription %+v publisher %+v", st, ps)
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	p.close()
	check()
}

func TestUnknownTrack(t *testing.T) {
	p := newPair(t, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := p.client.Subscribe(ctx, ns, "nope")
	if !errors.Is(err, ErrUnknownTrack) {
		t.Fatalf("want ErrUnknownTrack, got %v", err)
	}
}

// writeCraftedStream opens a raw uni stream on conn with a subgroup header
// for alias and the given pre-encoded objects.
func craftedSubgroup(alias, group uint64, objects ...[]byte) []byte {
	b := quicvarint.Append(nil, 0x0d)
	b = quicvarint.Append(b, alias)
	b = quicvarint.Append(b, group)
	b = quicvarint.Append(b, 0) // subgroup
	b = append(b, 0)            // priority
	for _, o := range objects {
		b = append(b, o...)
	}
	return b
}

func craftedObject(objectID, declaredLen uint64, payload []byte) []byte {
	b := quicvarint.Append(nil, objectID)
	b = quicvarint.Append(b, 0) // extension headers length
	b = quicvarint.Append(b, declaredLen)
	return append(b, payload...)
}

func TestOversizeObjectRejectedSessionSurvives(t *testing.T) {
	p := newPair(t, nil, &Config{MaxObjectSize: 64 << 10})
	pub, err := p.server.Publish(ns, "video")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub, err := p.client.Subscribe(ctx, ns, "video")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// A peer claiming a 1 TiB payload: v0.5.0 alone would make([]byte, 1<<40)
	// and die. One valid object precedes it on the same stream.
	s, err := p.server.conn.OpenUniStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	good := payloadFor(7, 0, 100)
	if _, err := s.Write(craftedSubgroup(0, 7,
		craftedObject(0, uint64(len(good)), good),
		craftedObject(1, 1<<40, []byte("xxxx")))); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	obj, err := sub.ReadObject(ctx)
	if err != nil || obj.GroupID != 7 || !bytes.Equal(obj.Payload, good) {
		t.Fatalf("object before the oversize one: %+v %v", obj, err)
	}
	// The session and other streams keep working.
	for i := uint64(0); i < 10; i++ {
		if err := pub.WriteObject(8+i, 0, 0, payloadFor(8+i, 0, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		obj, err := sub.ReadObject(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(obj.Payload, payloadFor(obj.GroupID, 0, 1000)) {
			t.Fatal("payload mismatch")
		}
	}
	if got := p.client.Stats().Oversize; got != 1 {
		t.Fatalf("session oversize = %d, want 1", got)
	}
	if got := sub.Stats().Oversize; got != 1 {
		t.Fatalf("subscription oversize = %d, want 1", got)
	}
	// Sending side refuses too.
	if err := pub.WriteObject(1, 0, 0, make([]byte, 5<<20)); !errors.Is(err, ErrObjectTooLarge) {
		t.Fatalf("want ErrObjectTooLarge on send, got %v", err)
	}
}

func TestSetupTimeoutSilentServer(t *testing.T) {
	check := goroutineBaseline(t)
	defer check()
	tc, err := DevTLSConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	// A QUIC server that completes the QUIC handshake but never speaks MoQ.
	ln, err := quic.ListenAddr("127.0.0.1:0", tc, &quic.Config{EnableDatagrams: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			defer c.CloseWithError(0, "")
		}
	}()
	start := time.Now()
	_, err = Dial(context.Background(), ln.Addr().String(), &Config{InsecureSkipVerify: true, HandshakeTimeout: 500 * time.Millisecond})
	if !errors.Is(err, ErrSetupTimeout) {
		t.Fatalf("want ErrSetupTimeout, got %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("setup timeout took %v", d)
	}
}

func TestSetupTimeoutSilentClient(t *testing.T) {
	check := goroutineBaseline(t)
	defer check()
	tc, err := DevTLSConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0", tc, &Config{HandshakeTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, ln.Addr().String(), &tls13Insecure, &quic.Config{EnableDatagrams: true})
	if err != nil {
		t.Fatal(err)
	}
	// Never send CLIENT_SETUP: the listener must close the connection.
	select {
	case <-qc.Context().Done():
	case <-time.After(3 * time.Second):
		t.Fatal("listener did not close a connection that never sent CLIENT_SETUP")
	}
	actx, acancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer acancel()
	if s, err := ln.Accept(actx); err == nil {
		t.Fatalf("Accept returned a session that never completed setup: %v", s.RemoteAddr())
	}
}

func TestStreamCreditWaiting(t *testing.T) {
	// The subscriber grants only 4 concurrent uni streams; the publisher
	// opens one stream per group for 300 groups.
	p := newPair(t, nil, &Config{MaxIncomingUniStreams: 4})
	pub, err := p.server.Publish(ns, "commits")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub, err := p.client.Subscribe(ctx, ns, "commits")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	const groups = 300
	for g := uint64(0); g < groups; g++ {
		if err := pub.WriteObject(g, 0, 0, payloadFor(g, 0, 200)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]bool{}
	for len(seen) < groups {
		obj, err := sub.ReadObject(ctx)
		if err != nil {
			t.Fatalf("after %d groups: %v (publisher %+v, session %+v)", len(seen), err, pub.Stats(), p.server.Stats())
		}
		if !bytes.Equal(obj.Payload, payloadFor(obj.GroupID, 0, 200)) {
			t.Fatal("payload mismatch")
		}
		seen[obj.GroupID] = true
	}
	if pub.Stats().Disconnected != 0 {
		t.Fatalf("publisher %+v", pub.Stats())
	}
	t.Logf("stream credit waits: %d", p.server.Stats().StreamCreditWaits)
	if p.server.Stats().StreamCreditWaits == 0 {
		t.Fatal("expected the publisher to wait for stream credit at least once")
	}
}

func TestClosedSessionErrors(t *testing.T) {
	p := newPair(t, nil, nil)
	_ = p.client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := p.client.Subscribe(ctx, ns, "x"); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("want ErrSessionClosed, got %v", err)
	}
	if err := p.client.Announce(ctx, ns); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("want ErrSessionClosed, got %v", err)
	}
	select {
	case <-p.server.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("server session not done after client close")
	}
}

func TestSubscriptionEndsOnPublisherClose(t *testing.T) {
	p := newPair(t, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pub, sub := p.subscribed(ctx, t, "a")
	for i := uint64(0); i < 20; i++ {
		_ = pub.WriteObject(0, 0, i, []byte(fmt.Sprint(i)))
	}
	_ = pub.Close()
	n := 0
	for {
		_, err := sub.ReadObject(ctx)
		if err != nil {
			if !errors.Is(err, ErrSubscriptionEnded) {
				t.Fatalf("want ErrSubscriptionEnded, got %v", err)
			}
			break
		}
		n++
	}
	if n != 20 {
		t.Fatalf("got %d of 20 objects before end", n)
	}
}

var tls13Insecure = tlsInsecure()

// A slow reader with a tiny queue: without the credit gate, moqtransport's
// 100-slot channel would overflow and drop silently (bug #2). With it,
// receiving pauses and nothing is lost.
func TestSlowReaderNoLibraryLoss(t *testing.T) {
	p := newPair(t, nil, &Config{SubscriptionQueue: 8})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pub, sub := p.subscribed(ctx, t, "slow")
	const total = 600
	for i := uint64(0); i < total; i++ {
		// 3 subgroups per group: concurrent streams push into one channel.
		if err := pub.WriteObject(i/30, i%3, i, payloadFor(i/30, i, 300)); err != nil {
			t.Fatal(err)
		}
	}
	// The slow reader reads nothing until everything that can hold objects
	// is full: its queue, and the library's channel up to the credit.
	// Without the credit gate, moqtransport's channel would overflow now.
	for len(sub.queue) < cap(sub.queue) || sub.in.inUse() < libraryQueueCredit {
		if ctx.Err() != nil {
			t.Fatalf("never saturated: queue %d/%d, library %d/%d", len(sub.queue), cap(sub.queue), sub.in.inUse(), libraryQueueCredit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for n := 0; n < total; n++ {
		obj, err := sub.ReadObject(ctx)
		if err != nil {
			t.Fatalf("after %d: %v (stats %+v)", n, err, sub.Stats())
		}
		if !bytes.Equal(obj.Payload, payloadFor(obj.GroupID, obj.ObjectID, 300)) {
			t.Fatal("payload mismatch")
		}
	}
	if st := sub.Stats(); st.Dropped != 0 || st.Objects != total {
		t.Fatalf("stats %+v", st)
	}
}

// Extension headers kill the rest of a subgroup stream in v0.5.0 (bug #1);
// the guard refuses such a stream explicitly and counts it, and discards
// datagrams instead of letting one for an unknown alias end the session.
func TestExtensionHeadersAndDatagramsRefused(t *testing.T) {
	p := newPair(t, nil, nil)
	pub, _ := p.server.Publish(ns, "v")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := p.client.Subscribe(ctx, ns, "v")
	if err != nil {
		t.Fatal(err)
	}
	_ = pub.WaitSubscribers(ctx, 1)
	s, err := p.server.conn.OpenUniStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	obj := quicvarint.Append(nil, 0) // object ID
	obj = quicvarint.Append(obj, 2)  // extension headers length
	obj = append(obj, 0x02, 0x05)    // even key, varint value
	obj = quicvarint.Append(obj, 3)
	obj = append(obj, "abc"...)
	if _, err := s.Write(craftedSubgroup(0, 1, obj)); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	// A datagram for an alias nobody subscribed to.
	if err := p.server.conn.SendDatagram([]byte{0x00, 0x2a, 0x00, 0x00, 0x00, 'x'}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.client.Stats().StreamsRefused == 0 || p.client.Stats().DatagramsDiscarded == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", p.client.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := pub.WriteObject(2, 0, 0, []byte("still alive")); err != nil {
		t.Fatal(err)
	}
	got, err := sub.ReadObject(ctx)
	if err != nil || string(got.Payload) != "still alive" {
		t.Fatalf("session did not survive: %+v %v", got, err)
	}
}

// An UNSUBSCRIBE that crosses our SUBSCRIBE_DONE names a request ID v0.5.0
// has forgotten; unfiltered, it stops the receiver's control loop. The
// control-stream filter drops it and the session keeps serving SUBSCRIBEs.
func TestStaleUnsubscribeDropped(t *testing.T) {
	p := newPair(t, nil, nil)
	a, _ := p.server.Publish(ns, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := p.client.Subscribe(ctx, ns, "a")
	if err != nil {
		t.Fatal(err)
	}
	_ = a.WaitSubscribers(ctx, 1)
	_ = a.Close()
	if _, err := sub.ReadObject(ctx); !errors.Is(err, ErrSubscriptionEnded) {
		t.Fatalf("want ErrSubscriptionEnded, got %v", err)
	}
	// What a peer without our guard would do: UNSUBSCRIBE anyway.
	if err := sub.rt.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.server.Stats().StaleUnsubscribes == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stale UNSUBSCRIBE not seen: %+v", p.server.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, _ := p.server.Publish(ns, "b")
	subB, err := p.client.Subscribe(ctx, ns, "b")
	if err != nil {
		t.Fatalf("server stopped handling SUBSCRIBE after a stale UNSUBSCRIBE: %v", err)
	}
	_ = b.WaitSubscribers(ctx, 1)
	_ = b.WriteObject(0, 0, 0, []byte("b"))
	if o, err := subB.ReadObject(ctx); err != nil || string(o.Payload) != "b" {
		t.Fatalf("%+v %v", o, err)
	}
	// A live UNSUBSCRIBE still reaches the library and the subscriber count
	// drops.
	_ = subB.Close()
	for g := uint64(1); b.Subscribers() > 0; g++ {
		if ctx.Err() != nil {
			t.Fatal("live UNSUBSCRIBE was not delivered")
		}
		_ = b.WriteObject(g, 0, 0, []byte("b"))
		time.Sleep(20 * time.Millisecond)
	}
}

// When a v0.5.0 session goroutine fails (here: the peer lowers
// MAX_REQUEST_ID, a protocol violation that ends the control loop), the
// connection is closed instead of staying half alive.
func TestLibraryFailureClosesSession(t *testing.T) {
	p := newPair(t, nil, nil)
	p.server.mu.Lock()
	ctl := p.server.ctl
	p.server.mu.Unlock()
	msg := quicvarint.Append(nil, 0x15) // MAX_REQUEST_ID
	msg = append(msg, 0, 1, 0x01)       // length 1, value 1 (< 100)
	if _, err := ctl.s.Write(msg); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.client.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client session still open after its control loop failed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := p.client.Subscribe(ctx, ns, "x"); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("want ErrSessionClosed, got %v", err)
	}
}

// A Subscribe whose ctx expires before SUBSCRIBE_OK: v0.5.0 alone would
// forget the request and stop its control loop when the late OK arrives.
//
// Explicit steps, no timing: the publisher's handler for "slow" blocks its
// control loop until the client's Subscribe has given up; the SUBSCRIBE for
// "fast" is sent after the handler is released, and the publisher handles
// control messages in order, so the late SUBSCRIBE_OK reaches the client
// before anything about "fast".
func TestSubscribeTimeoutThenLateOK(t *testing.T) {
	slow := &Config{}
	var pub *Publisher
	release := make(chan struct{})
	slow.OnSubscribe = func(_ *Session, _ []string, track string) (*Publisher, error) {
		if track == "slow" {
			<-release // a slow publisher (blocks its control loop on purpose)
		}
		return pub, nil
	}
	pub = NewPublisher(ns, "any", slow)
	p := newPair(t, slow, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := p.client.Subscribe(ctx, ns, "slow")
	cancel()
	close(release) // the late SUBSCRIBE_OK goes out now
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want DeadlineExceeded, got %v", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	sub, err := p.client.Subscribe(ctx2, ns, "fast")
	if err != nil {
		t.Fatalf("session unusable after a late SUBSCRIBE_OK: %v", err)
	}
	// The abandoned subscription was unsubscribed: only "fast" stays.
	for pub.Subscribers() != 1 {
		_ = pub.WriteObject(uint64(time.Now().UnixNano()), 0, 0, []byte("x"))
		if ctx2.Err() != nil {
			t.Fatalf("subscribers = %d, want 1", pub.Subscribers())
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = sub.Close()
}

// waitFor polls cond until it holds or d passes (a condition wait, not
// pacing: cond is what the test is about).
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// An UNSUBSCRIBE ends the publisher's side of the subscription even while
// the publisher keeps writing into one long group (an intra-refresh encoder
// never opens a new group, so v0.5.0 alone would never tell it).
func TestUnsubscribeSeenWithinOneGroup(t *testing.T) {
	p := newPair(t, nil, nil)
	pub, _ := p.server.Publish(ns, "long-group")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub, err := p.client.Subscribe(ctx, ns, "long-group")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		// The encoder: group 0 forever, at its own frame rate.
		defer close(writerDone)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for id := uint64(0); ; id++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := pub.WriteObject(0, 0, id, []byte("frame")); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(stop); <-writerDone }()
	for i := 0; i < 10; i++ {
		if o, err := sub.ReadObject(ctx); err != nil || o.GroupID != 0 {
			t.Fatalf("%+v %v", o, err)
		}
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the publisher to drop the unsubscribed subscriber", func() bool { return pub.Subscribers() == 0 })
	before := pub.Stats().ObjectsOut
	// Objects written from now on go nowhere.
	n := pub.Stats().ObjectsIn
	waitFor(t, 10*time.Second, "more objects written", func() bool { return pub.Stats().ObjectsIn >= n+20 })
	if after := pub.Stats().ObjectsOut; after != before {
		t.Fatalf("publisher kept sending after UNSUBSCRIBE: %d -> %d objects out", before, after)
	}
	if st := pub.Stats(); st.Disconnected != 0 {
		t.Fatalf("an UNSUBSCRIBE counted as a disconnect: %+v", st)
	}
}

// TestClosedByPeer: a session the peer closed says so; one closed here
// does not.
func TestClosedByPeer(t *testing.T) {
	p := newPair(t, nil, nil)
	p.server.Close()
	<-p.client.Done()
	if !p.client.ClosedByPeer() {
		t.Error("client: the server closed the session, ClosedByPeer false")
	}
	q := newPair(t, nil, nil)
	q.client.Close()
	if q.client.ClosedByPeer() {
		t.Error("client: closed locally, ClosedByPeer true")
	}
}

// TestBacklogDrainsOldestGroupFirst: a subscriber that falls behind has one
// stream per group buffered, every one waiting for library credit; the
// whole backlog arrives intact. How far out of order it came is logged,
// not asserted: a stream descheduled between two network reads lets newer
// ones through, so the figure depends on the machine's load (0 groups on
// an idle machine, 14 once under -race beside two CPU burners; a FIFO
// gate gave 55-56). TestCreditGateOldestFirst asserts the gate's order
// step by step.
func TestBacklogDrainsOldestGroupFirst(t *testing.T) {
	const groups, perGroup, queue = 60, 20, 16
	p := newPair(t, nil, &Config{SubscriptionQueue: queue})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, sub := p.subscribed(ctx, t, "video")
	if writeObjects(t, pub, groups*perGroup, perGroup, 100); t.Failed() {
		t.FailNow()
	}
	// Admitted before the gate filled: the subscription's queue, the
	// library's credit and one object in hand. Every group not wholly
	// admitted then has its stream contending at the gate.
	admitted := queue + libraryQueueCredit + 1
	contending := groups - (admitted+perGroup-1)/perGroup
	waitFor(t, 20*time.Second, "the backlogged streams at the credit gate", func() bool {
		sub.in.mu.Lock()
		defer sub.in.mu.Unlock()
		return len(sub.in.contenders) >= contending
	})
	var newest, worst uint64
	for n := range groups * perGroup {
		obj, err := sub.ReadObject(ctx)
		if err != nil {
			t.Fatalf("after %d objects: %v", n, err)
		}
		if !bytes.Equal(obj.Payload, payloadFor(obj.GroupID, obj.ObjectID, 100)) {
			t.Fatalf("payload mismatch for group %d object %d", obj.GroupID, obj.ObjectID)
		}
		if n < admitted {
			continue
		}
		newest = max(newest, obj.GroupID)
		worst = max(worst, newest-obj.GroupID)
	}
	t.Logf("after the first %d objects, the worst came %d groups behind the newest read before it (%d streams contended)", admitted, worst, contending)
}
