// Package integration runs the relay binary as a separate process and talks
// to it over real QUIC on 127.0.0.1.
package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/internal/proctest"
	"github.com/moqsframe/moqsframe/moq"
)

// relayProc is a running moq-relay process.
type relayProc struct {
	*proctest.Proc
	addr        string // QUIC
	metricsAddr string // HTTP
}

func TestMain(m *testing.M) { proctest.Main(m) }

// startRelay runs cmd/moq-relay (built once per test binary, with -race when
// the tests have it) on free loopback ports and waits for /healthz.
func startRelay(t testing.TB, extraArgs ...string) *relayProc {
	t.Helper()
	r := &relayProc{addr: proctest.FreeUDPAddr(t), metricsAddr: proctest.FreeTCPAddr(t)}
	args := append([]string{"-listen", r.addr, "-metrics", r.metricsAddr}, extraArgs...)
	r.Proc = proctest.Start(t, "moq-relay", proctest.Build(t, relayPkg), args...)
	r.WaitHealthy(t, "http://"+r.metricsAddr+"/healthz", 15*time.Second)
	return r
}

// stop sends SIGTERM and expects a clean exit (graceful shutdown).
func (r *relayProc) stop(t *testing.T) {
	if err := r.Stop(t); err != nil {
		t.Errorf("relay exit after SIGTERM: %v", err)
	}
}

// metrics fetches /metrics as name{labels} -> value.
func (r *relayProc) metrics(t *testing.T) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for k, v := range proctest.Metrics(t, "http://"+r.metricsAddr+"/metrics") {
		out[k] = uint64(v)
	}
	return out
}

func dial(t testing.TB, addr string, cfg *moq.Config) *moq.Session {
	t.Helper()
	if cfg == nil {
		cfg = &moq.Config{}
	}
	cfg.InsecureSkipVerify = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := moq.Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// payloadFor is a deterministic payload for (track, group, object).
func payloadFor(track int, g, o uint64, n int) []byte {
	var seed [24]byte
	binary.BigEndian.PutUint64(seed[:8], uint64(track))
	binary.BigEndian.PutUint64(seed[8:16], g)
	binary.BigEndian.PutUint64(seed[16:], o)
	h := sha256.Sum256(seed[:])
	out := make([]byte, 0, n+32)
	for len(out) < n {
		out = append(out, h[:]...)
		h = sha256.Sum256(h[:])
	}
	return out[:n]
}

// publishAndAnnounce sets up an origin publisher for (ns, tracks...).
func publishAndAnnounce(t testing.TB, s *moq.Session, ns []string, tracks ...string) []*moq.Publisher {
	t.Helper()
	var pubs []*moq.Publisher
	for _, tr := range tracks {
		p, err := s.Publish(ns, tr)
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	return pubs
}

// receiveAll reads want objects and checks them byte-exact against
// payloadFor(track, ...). It returns the number received.
func receiveAll(ctx context.Context, sub *moq.Subscription, track, want, size int) (int, error) {
	seen := make(map[[3]uint64]bool, want)
	for len(seen) < want {
		obj, err := sub.ReadObject(ctx)
		if err != nil {
			return len(seen), err
		}
		k := [3]uint64{obj.GroupID, obj.SubgroupID, obj.ObjectID}
		if seen[k] {
			return len(seen), fmt.Errorf("duplicate object %v", k)
		}
		seen[k] = true
		if !bytes.Equal(obj.Payload, payloadFor(track, obj.GroupID, obj.ObjectID, size)) {
			return len(seen), fmt.Errorf("payload mismatch for %v", k)
		}
	}
	return len(seen), nil
}

func TestRelayFanOutThreeSubscribers(t *testing.T) {
	r := startRelay(t, "-queue", "4096")
	ns := []string{"example.org", "room1"}
	pubSess := dial(t, r.addr, nil)
	pub := publishAndAnnounce(t, pubSess, ns, "video")[0]

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var subs []*moq.Subscription
	for i := 0; i < 3; i++ {
		s := dial(t, r.addr, nil)
		sub, err := s.Subscribe(ctx, ns, "video")
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	// The relay subscribes upstream once for all three.
	if err := pub.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}

	const total, perGroup, size = 2000, 30, 1200
	start := time.Now()
	go func() {
		for i := uint64(0); i < total; i++ {
			if err := pub.WriteObject(i/perGroup, 0, i%perGroup, payloadFor(0, i/perGroup, i%perGroup, size)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make([]error, len(subs))
	for i, sub := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := receiveAll(ctx, sub, 0, total, size)
			if err != nil {
				errs[i] = fmt.Errorf("subscriber %d after %d objects: %w", i, n, err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("relay fan-out: %d objects x %d B to 3 subscribers in %v: %.0f objects/s in, %.0f objects/s out, %.1f Mbit/s out",
		total, size, elapsed, float64(total)/elapsed.Seconds(), 3*float64(total)/elapsed.Seconds(),
		3*float64(total*size)*8/elapsed.Seconds()/1e6)
	for i, sub := range subs {
		if st := sub.Stats(); st.Dropped != 0 || st.Objects != total {
			t.Errorf("subscriber %d stats %+v", i, st)
		}
	}

	m := r.metrics(t)
	t.Logf("metrics: %v", m)
	checks := map[string]uint64{
		"moq_relay_objects_in_total":                   total,
		"moq_relay_objects_out_total":                  3 * total,
		"moq_relay_bytes_in_total":                     total * size,
		"moq_relay_bytes_out_total":                    3 * total * size,
		"moq_relay_subscribers":                        3,
		"moq_relay_tracks":                             1,
		"moq_relay_sessions":                           4,
		`moq_relay_dropped_total{reason="queue_full"}`: 0,
		`moq_relay_dropped_total{reason="oversize"}`:   0,
	}
	for name, want := range checks {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %d (present %v), want %d", name, got, ok, want)
		}
	}
}

func TestRelaySlowSubscriberDoesNotStallOthers(t *testing.T) {
	r := startRelay(t, "-queue", "512", "-max-drops", "300")
	ns := []string{"example.org", "room2"}
	pubSess := dial(t, r.addr, nil)
	pub := publishAndAnnounce(t, pubSess, ns, "video")[0]

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fast := make([]*moq.Subscription, 2)
	for i := range fast {
		sub, err := dial(t, r.addr, nil).Subscribe(ctx, ns, "video")
		if err != nil {
			t.Fatal(err)
		}
		fast[i] = sub
	}
	// The slow subscriber reads nothing until the fast ones are done; its
	// small queue makes receive-side backpressure reach the relay quickly.
	slow, err := dial(t, r.addr, &moq.Config{SubscriptionQueue: 4}).Subscribe(ctx, ns, "video")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}

	const total, perGroup, size = 2400, 30, 1200
	go func() {
		for i := uint64(0); i < total; i++ {
			if err := pub.WriteObject(i/perGroup, 0, i%perGroup, payloadFor(0, i/perGroup, i%perGroup, size)); err != nil {
				t.Error(err)
				return
			}
			if i%perGroup == perGroup-1 {
				time.Sleep(50 * time.Millisecond) // live-like pacing: ~600 objects/s
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make([]error, len(fast))
	for i, sub := range fast {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := receiveAll(ctx, sub, 0, total, size)
			if err != nil {
				errs[i] = fmt.Errorf("fast subscriber %d after %d objects: %w", i, n, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	m := r.metrics(t)
	t.Logf("metrics: %v", m)
	dropped := m[`moq_relay_dropped_total{reason="queue_full"}`]
	if dropped == 0 {
		t.Errorf("expected drops for the slow subscriber, metrics %v", m)
	}
	if m["moq_relay_subscriber_disconnects_total"] < 1 {
		t.Errorf("expected the slow subscriber to be disconnected after 300 drops, metrics %v", m)
	}
	// What the slow subscriber does get is intact.
	got := 0
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	defer rcancel()
	for {
		obj, err := slow.ReadObject(rctx)
		if err != nil {
			if !errors.Is(err, moq.ErrSubscriptionEnded) && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("slow subscriber: %v", err)
			}
			break
		}
		if !bytes.Equal(obj.Payload, payloadFor(0, obj.GroupID, obj.ObjectID, size)) {
			t.Fatal("slow subscriber payload mismatch")
		}
		got++
	}
	t.Logf("slow subscriber got %d of %d objects; relay dropped %d copies for it", got, total, dropped)
	if got >= total {
		t.Errorf("slow subscriber got everything; the test did not exercise overflow")
	}
}

func TestRelayConcurrentPublishersAndTracks(t *testing.T) {
	r := startRelay(t, "-queue", "2048")
	const pubs, tracksPer, total, size = 3, 2, 300, 500
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	type trackRef struct {
		ns    []string
		name  string
		index int
		pub   *moq.Publisher
	}
	var all []trackRef
	for p := 0; p < pubs; p++ {
		ns := []string{"conf", fmt.Sprintf("publisher%d", p)}
		names := []string{"video", "audio"}[:tracksPer]
		ps := publishAndAnnounce(t, dial(t, r.addr, nil), ns, names...)
		for i, name := range names {
			all = append(all, trackRef{ns: ns, name: name, index: len(all), pub: ps[i]})
		}
	}
	// Two subscriber sessions, each subscribing to every track: several
	// subscriptions share one session.
	subSessions := []*moq.Session{dial(t, r.addr, nil), dial(t, r.addr, nil)}
	type subRef struct {
		sub   *moq.Subscription
		track int
	}
	var subs []subRef
	for _, s := range subSessions {
		for _, tr := range all {
			sub, err := s.Subscribe(ctx, tr.ns, tr.name)
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, subRef{sub, tr.index})
		}
	}
	// Unknown namespace is refused with ErrUnknownTrack through the relay.
	if _, err := subSessions[0].Subscribe(ctx, []string{"nobody"}, "video"); !errors.Is(err, moq.ErrUnknownTrack) {
		t.Errorf("want ErrUnknownTrack for an unannounced namespace, got %v", err)
	}
	for _, tr := range all {
		if err := tr.pub.WaitSubscribers(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for _, tr := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(0); i < total; i++ {
				// two subgroups per group
				if err := tr.pub.WriteObject(i/20, i%2, i, payloadFor(tr.index, i/20, i, size)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	errs := make([]error, len(subs))
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := receiveAll(ctx, s.sub, s.track, total, size)
			if err != nil {
				errs[i] = fmt.Errorf("subscription %d (track %d) after %d: %w", i, s.track, n, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	m := r.metrics(t)
	if got := m["moq_relay_tracks"]; got != pubs*tracksPer {
		t.Errorf("moq_relay_tracks = %d, want %d", got, pubs*tracksPer)
	}
	if got := m["moq_relay_objects_out_total"]; got != uint64(len(subs)*total) {
		t.Errorf("moq_relay_objects_out_total = %d, want %d", got, len(subs)*total)
	}
}

// The relay's own size guard: a publisher sending an object above the
// relay's -max-object-size gets that stream stopped, the relay survives and
// counts it.
func TestRelayOversizeGuard(t *testing.T) {
	r := startRelay(t, "-max-object-size", "10000")
	ns := []string{"example.org", "big"}
	// The publisher's own limit is higher, so it sends.
	pubSess := dial(t, r.addr, &moq.Config{MaxObjectSize: 1 << 20})
	pub := publishAndAnnounce(t, pubSess, ns, "t")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub, err := dial(t, r.addr, nil).Subscribe(ctx, ns, "t")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := pub.WriteObject(0, 0, 0, make([]byte, 20000)); err != nil {
		t.Fatal(err)
	}
	for g := uint64(1); g <= 5; g++ {
		if err := pub.WriteObject(g, 0, 0, payloadFor(0, g, 0, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := receiveAll(ctx, sub, 0, 5, 1000); err != nil {
		t.Fatalf("after %d: %v", n, err)
	}
	m := r.metrics(t)
	if got := m[`moq_relay_dropped_total{reason="oversize"}`]; got != 1 {
		t.Errorf("oversize drops = %d, want 1 (%v)", got, m)
	}
}
