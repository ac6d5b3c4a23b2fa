package moq

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// TestSendStreamWriteTimeout: a Write that a peer's flow control blocks
// fails with a timeout after the stream's timeout (the watchdog), and once
// the peer reads again the next Write on the same stream succeeds (the
// watchdog's deadline is cleared).
func TestSendStreamWriteTimeout(t *testing.T) {
	tc, err := DevTLSConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	const window = 16 << 10
	qcfg := &quic.Config{InitialStreamReceiveWindow: window, MaxStreamReceiveWindow: window}
	ln, err := quic.ListenAddr("127.0.0.1:0", tc, qcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	peer := make(chan *quic.ReceiveStream, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		s, err := c.AcceptUniStream(ctx)
		if err != nil {
			return
		}
		peer <- s
	}()
	tls := tlsInsecure()
	qc, err := quic.DialAddr(ctx, ln.Addr().String(), &tls, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	qs, err := qc.OpenUniStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := &sendStream{s: qs, timeout: 200 * time.Millisecond}

	// More than the peer's window, which nobody reads: the Write blocks
	// until the watchdog ends it.
	big := make([]byte, 4*window)
	n, err := s.Write(big)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Write past a full window: n=%d err=%v, want a timeout", n, err)
	}
	if n >= len(big) {
		t.Fatalf("Write reported all %d bytes written", n)
	}

	// The peer reads everything; a Write on the same stream now succeeds
	// (whether the watchdog's deadline was still set or not).
	rs := <-peer
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(rs); got <- b }()
	tail := []byte("after the timeout")
	if _, err := s.Write(tail); err != nil {
		t.Fatalf("Write after the peer resumed reading: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b := <-got
	if len(b) != n+len(tail) || !bytes.Equal(b[n:], tail) {
		t.Fatalf("peer read %d bytes ending %q, want %d ending %q", len(b), b[max(0, len(b)-len(tail)):], n+len(tail), tail)
	}
}

// TestCoalescingFlushesWhenIdle: a subscriber's writer keeps objects per
// stream while it has a backlog and writes them once its queue is empty,
// so a lone object is not held back, a burst arrives whole and in order,
// and ObjectsOut counts every object once it is flushed.
func TestCoalescingFlushesWhenIdle(t *testing.T) {
	p := newPair(t, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pub, sub := p.subscribed(ctx, t, "video")
	waitOut := func(want uint64) {
		t.Helper()
		for pub.Stats().ObjectsOut != want {
			if ctx.Err() != nil {
				t.Fatalf("ObjectsOut %d, want %d", pub.Stats().ObjectsOut, want)
			}
			time.Sleep(time.Millisecond)
		}
	}

	// One object and nothing after it: it must arrive on its own.
	if err := pub.WriteObject(0, 0, 0, payloadFor(0, 0, 100)); err != nil {
		t.Fatal(err)
	}
	if o, err := sub.ReadObject(ctx); err != nil || o.ObjectID != 0 {
		t.Fatalf("lone object: %+v, %v", o, err)
	}
	waitOut(1)

	// A burst far larger than coalesceLimit, written faster than it is
	// sent, on two groups' streams.
	const n, size = 600, 1200
	for i := uint64(1); i <= n; i++ {
		g := i * 2 / (n + 1)
		if err := pub.WriteObject(g, 0, i, payloadFor(g, i, size)); err != nil {
			t.Fatal(err)
		}
	}
	next := map[uint64]uint64{}
	for range n {
		o, err := sub.ReadObject(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if o.ObjectID <= next[o.GroupID] {
			t.Fatalf("group %d: object %d after %d", o.GroupID, o.ObjectID, next[o.GroupID])
		}
		next[o.GroupID] = o.ObjectID
		if !bytes.Equal(o.Payload, payloadFor(o.GroupID, o.ObjectID, size)) {
			t.Fatalf("object %d/%d: payload differs", o.GroupID, o.ObjectID)
		}
	}
	waitOut(1 + n)
	if st := pub.Stats(); st.Dropped != 0 {
		t.Fatalf("publisher dropped %d", st.Dropped)
	}
}
