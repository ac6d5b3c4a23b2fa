package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/moq"
)

// relayBatch is how many objects the publisher writes before waiting for
// every subscriber to have them all: large enough that the wait (one
// round trip) is small next to the transfer, small enough to fit in every
// queue so that nothing is dropped or stalls on back-pressure timeouts.
const (
	relayBatch   = 300
	relayPerGrp  = 30
	relayObjSize = 1200
	relayQueue   = 4 * relayBatch
)

// fanOut is one publisher and its subscribers, wherever they are connected.
type fanOut struct {
	pub  *moq.Publisher
	done chan struct{} // a token per subscriber per completed batch
	next uint64        // next object index
	stop context.CancelFunc
}

func newFanOut(b *testing.B, pub *moq.Publisher, subs []*moq.Subscription, stop context.CancelFunc, ctx context.Context) *fanOut {
	f := &fanOut{pub: pub, done: make(chan struct{}, len(subs)), stop: stop}
	for _, sub := range subs {
		go func() {
			for n := 1; ; n++ {
				if _, err := sub.ReadObject(ctx); err != nil {
					if ctx.Err() == nil {
						b.Errorf("after %d objects: %v", n-1, err)
						f.done <- struct{}{} // unblock the writer; the benchmark has failed
					}
					return
				}
				if n%relayBatch == 0 {
					f.done <- struct{}{}
				}
			}
		}()
	}
	b.Cleanup(stop)
	return f
}

// batch writes relayBatch objects and waits until every subscriber has read
// them, so that a timed run of batches measures delivered throughput.
func (f *fanOut) batch(b *testing.B, payload []byte) {
	for range relayBatch {
		i := f.next
		f.next++
		payload[0] = byte(i)
		if err := f.pub.WriteObject(i/relayPerGrp, 0, i%relayPerGrp, payload); err != nil {
			b.Fatal(err)
		}
	}
	for range cap(f.done) {
		<-f.done
	}
}

// relayFanOut: the publisher and subscriber sessions dial a moq-relay
// process.
func relayFanOut(b *testing.B, subsN int) *fanOut {
	r := startRelay(b, "-queue", fmt.Sprint(relayQueue), "-log-level", "warn")
	ns := []string{"bench"}
	pub := publishAndAnnounce(b, dial(b, r.addr, nil), ns, "video")[0]
	ctx, cancel := context.WithCancel(context.Background())
	var subs []*moq.Subscription
	for range subsN {
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		sub, err := dial(b, r.addr, nil).Subscribe(sctx, ns, "video")
		scancel()
		if err != nil {
			b.Fatal(err)
		}
		subs = append(subs, sub)
	}
	// The relay is the publisher's one subscriber, whatever the fan-out.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := pub.WaitSubscribers(wctx, 1); err != nil {
		b.Fatal(err)
	}
	return newFanOut(b, pub, subs, cancel, ctx)
}

// directFanOut is the baseline: the subscribers dial the publisher's own
// in-process MoQ listener, with no relay in between.
func directFanOut(b *testing.B, subsN int) *fanOut {
	tlsConf, err := moq.DevTLSConfig("127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	cfg := &moq.Config{SubscriberQueue: relayQueue}
	pub := moq.NewPublisher([]string{"bench"}, "video", cfg)
	cfg.OnSubscribe = func(*moq.Session, []string, string) (*moq.Publisher, error) { return pub, nil }
	ln, err := moq.Listen("127.0.0.1:0", tlsConf, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			if _, err := ln.Accept(context.Background()); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	var subs []*moq.Subscription
	for range subsN {
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		sub, err := dial(b, ln.Addr().String(), nil).Subscribe(sctx, []string{"bench"}, "video")
		scancel()
		if err != nil {
			b.Fatal(err)
		}
		subs = append(subs, sub)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := pub.WaitSubscribers(wctx, subsN); err != nil {
		b.Fatal(err)
	}
	return newFanOut(b, pub, subs, cancel, ctx)
}

// BenchmarkRelayThroughput measures 1200-byte objects (30 per group)
// delivered through a moq-relay process to 1 and 3 subscribers; an op is one
// object published (and received by every subscriber). After the timed
// run, the same number of objects goes from an in-process publisher straight
// to the same number of subscribers (no relay) as the baseline, and
// x-direct = relay throughput / direct throughput. Both run on this machine
// at the same time of day, so the ratio is what to compare across runs.
// Not in `make bench`: it builds and runs the relay binary, and the
// integration package also builds every other command; see `make bench-relay`:
//
//	go test -run '^$' -bench RelayThroughput ./integration/
func BenchmarkRelayThroughput(b *testing.B) {
	for _, subsN := range []int{1, 3} {
		b.Run(fmt.Sprintf("subscribers=%d", subsN), func(b *testing.B) {
			payload := make([]byte, relayObjSize)
			relay := relayFanOut(b, subsN)
			relay.batch(b, payload) // warm up the sessions
			// MB/s is delivered bytes (every subscriber's copy).
			b.SetBytes(int64(relayBatch * relayObjSize * subsN))
			batches := 0
			for b.Loop() {
				relay.batch(b, payload)
				batches++
			}
			relayNs := float64(b.Elapsed().Nanoseconds())
			relay.stop()

			direct := directFanOut(b, subsN)
			direct.batch(b, payload)
			start := time.Now()
			for range batches {
				direct.batch(b, payload)
			}
			directNs := float64(time.Since(start).Nanoseconds())

			objs := float64(batches * relayBatch)
			b.ReportMetric(objs/relayNs*1e9, "obj/s-in")
			b.ReportMetric(objs*float64(subsN)/relayNs*1e9, "obj/s-out")
			b.ReportMetric(objs/directNs*1e9, "direct-obj/s-in")
			b.ReportMetric(directNs/relayNs, "x-direct")
			// Per object, not per batch of relayBatch (MB/s is unaffected).
			b.ReportMetric(relayNs/objs, "ns/op")
		})
	}
}
