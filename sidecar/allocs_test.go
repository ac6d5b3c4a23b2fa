package sidecar

import (
	"bytes"
	"context"
	"runtime"
	"testing"

	"github.com/moqsframe/moqsframe/sframe"
)

// TestPublishPathAllocs: from Submit to the MoQ publisher (the pipeline,
// the SFrame seal, the reconnect buffer, Publisher.Forward), an encrypting
// sidecar allocates at most one object per object: the payload copy that
// the reconnect buffer keeps and the publisher's subscribers share. The
// rest of the publish path (moqtransport's framing, quic-go) is measured by
// integration.TestPublishPathAllocs.
func TestPublishPathAllocs(t *testing.T) {
	keys, err := NewStaticKeys(sframe.AES128GCMSHA256_128, bytes.Repeat([]byte{1}, 16))
	if err != nil {
		t.Fatal(err)
	}
	ns := []string{"alloc", "test"}
	relay := NewRelayClient("127.0.0.1:1", nil, nil) // never run: the backlog forwards to a publisher without subscribers
	sc, err := New(Config{Mode: Encrypt, Namespace: ns, Keys: keys, Sink: relay.Sink(ns)})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	pub := relay.Publisher(ns, "v")
	payload := make([]byte, 1200)
	next := uint64(0)
	// send submits n objects and waits until the publisher has them all,
	// so objects still in a worker's hands are not left out of the count.
	send := func(n int) {
		for range n {
			if err := sc.Submit(context.Background(), "v", next/100, 0, next%100, payload); err != nil {
				t.Fatal(err)
			}
			next++
		}
		for pub.Stats().ObjectsIn < next {
			runtime.Gosched()
		}
	}
	send(5000) // buffers, the track, the reconnect buffer's ring
	const n = 5000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	send(n)
	runtime.ReadMemStats(&after)
	if per := float64(after.Mallocs-before.Mallocs) / n; per > 1.05 {
		t.Fatalf("%.2f allocations per object from Submit to the publisher, want at most 1 (the kept payload)", per)
	} else {
		t.Logf("%.2f allocations per object", per)
	}
}
