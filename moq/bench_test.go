package moq

import (
	"context"
	"testing"
	"time"
)

// BenchmarkDirect measures publisher -> subscriber objects/s on loopback
// (1200 B objects, 30 per group).
func BenchmarkDirect(b *testing.B) {
	p := newPairB(b)
	pub, _ := p.server.Publish(ns, "bench")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub, err := p.client.Subscribe(ctx, ns, "bench")
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
