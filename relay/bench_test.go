package relay

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/moq"
)

// BenchmarkRelayInProcess: publisher -> relay -> 1 subscriber, 1200 B
// objects, everything in one process (for profiling the relay path).
func BenchmarkRelayInProcess(b *testing.B) {
	tc, err := moq.DevTLSConfig("127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	r, err := New(Config{Addr: "127.0.0.1:0", TLS: tc, SubscriberQueue: b.N + 1, SubscriberQueueBytes: max(moq.DefaultSubscriberQueueBytes, (b.N+1)*1200), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = r.Serve(context.Background()) }()
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := &moq.Config{InsecureSkipVerify: true}
	ps, err := moq.Dial(ctx, r.Addr().String(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer ps.Close()
	ns := []string{"bench"}
	pub, _ := ps.Publish(ns, "t")
	if err := ps.Announce(ctx, ns); err != nil {
		b.Fatal(err)
	}
	ss, err := moq.Dial(ctx, r.Addr().String(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer ss.Close()
	sub, err := ss.Subscribe(ctx, ns, "t")
	if err != nil {
		b.Fatal(err)
	}
	_ = pub.WaitSubscribers(ctx, 1)
	payload := make([]byte, 1200)
	b.SetBytes(1200)
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i++ {
			_ = pub.WriteObject(uint64(i/30), 0, uint64(i%30), payload)
		}
	}()
	for i := 0; i < b.N; i++ {
		if _, err := sub.ReadObject(ctx); err != nil {
			b.Fatalf("after %d: %v", i, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "objects/s")
}
