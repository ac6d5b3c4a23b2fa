package integration

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/moq"
)

// TestRelayThroughput measures objects/s through a relay process. Opt-in:
//
//	MOQ_RELAY_BENCH_OBJECTS=20000 go test -run Throughput -v ./integration/
func TestRelayThroughput(t *testing.T) {
	total, _ := strconv.Atoi(os.Getenv("MOQ_RELAY_BENCH_OBJECTS"))
	if total <= 0 {
		t.Skip("set MOQ_RELAY_BENCH_OBJECTS to run")
	}
	subsN, _ := strconv.Atoi(os.Getenv("MOQ_RELAY_BENCH_SUBSCRIBERS"))
	if subsN <= 0 {
		subsN = 3
	}
	const perGroup, size = 30, 1200
	r := startRelay(t, "-queue", strconv.Itoa(total+1))
	ns := []string{"bench"}
	pub := publishAndAnnounce(t, dial(t, r.addr, nil), ns, "video")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var subs []*moq.Subscription
	for i := 0; i < subsN; i++ {
		sub, err := dial(t, r.addr, nil).Subscribe(ctx, ns, "video")
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	if err := pub.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, size)
	start := time.Now()
	go func() {
		for i := 0; i < total; i++ {
			payload[0] = byte(i)
			if err := pub.WriteObject(uint64(i/perGroup), 0, uint64(i%perGroup), payload); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for _, sub := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < total; n++ {
				if _, err := sub.ReadObject(ctx); err != nil {
					t.Errorf("after %d: %v", n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	t.Logf("%d objects x %d B, %d subscribers: %v; %.0f objects/s in, %.0f objects/s out, %.0f Mbit/s out",
		total, size, subsN, el.Round(time.Millisecond), float64(total)/el.Seconds(),
		float64(total*subsN)/el.Seconds(), float64(total*subsN*size*8)/el.Seconds()/1e6)
	t.Logf("metrics: %v", r.metrics(t))
}
