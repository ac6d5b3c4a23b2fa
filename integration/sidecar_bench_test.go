package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/internal/proctest"
	"github.com/moqsframe/moqsframe/moq"
)

// sidecarChain is a relay and an encrypting and a decrypting sidecar as
// separate processes, fed by an in-process MoQ publisher of plaintext
// tracks (the encrypting sidecar's -source).
type sidecarChain struct {
	pubs                   map[string]*moq.Publisher
	encMetrics, decMetrics string
	dec                    *proctest.Proc
}

func startChain(b *testing.B, tracks []string) *sidecarChain {
	relayBin, sidecarBin := proctest.Build(b, relayPkg), proctest.Build(b, sidecarPkg)
	dir := b.TempDir()
	keyFile := filepath.Join(dir, "key.json")
	os.WriteFile(keyFile, []byte(`{"suite": 4, "base_key": "00112233445566778899aabbccddeeff"}`), 0o600)

	tlsConf, err := moq.DevTLSConfig("127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	c := &sidecarChain{pubs: map[string]*moq.Publisher{}}
	b.Cleanup(func() {
		if c.dec != nil && !b.Failed() && os.Getenv("SIDECAR_BENCH_LOGS") != "" {
			b.Logf("decrypting sidecar log:\n%s", c.dec.Output())
		}
	})
	cfg := &moq.Config{SubscriberQueue: 8192}
	for _, t := range tracks {
		c.pubs[t] = moq.NewPublisher([]string{"bench", "plain"}, t, cfg)
	}
	cfg.OnSubscribe = func(_ *moq.Session, _ []string, track string) (*moq.Publisher, error) {
		if p, ok := c.pubs[track]; ok {
			return p, nil
		}
		return nil, moq.ErrUnknownTrack
	}
	src, err := moq.Listen("127.0.0.1:0", tlsConf, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { src.Close() })
	go func() {
		for {
			if _, err := src.Accept(context.Background()); err != nil {
				return
			}
		}
	}()

	relayAddr, relayMetrics := proctest.FreeUDPAddr(b), proctest.FreeTCPAddr(b)
	proctest.Start(b, "moq-relay", relayBin, "-listen", relayAddr, "-metrics", relayMetrics, "-queue", "8192", "-log-level", "warn")
	proctest.WaitHTTP(b, "http://"+relayMetrics+"/healthz", 20*time.Second)
	list := strings.Join(tracks, ",")
	c.encMetrics, c.decMetrics = proctest.FreeTCPAddr(b), proctest.FreeTCPAddr(b)
	common := []string{"-relay", relayAddr, "-insecure", "-namespace", "bench/live", "-key-file", keyFile, "-tracks", list, "-log-level", "warn"}
	proctest.Start(b, "encrypting sidecar", sidecarBin, append([]string{"-mode", "encrypt", "-source", src.Addr().String(),
		"-source-namespace", "bench/plain", "-metrics", c.encMetrics}, common...)...)
	c.dec = proctest.Start(b, "decrypting sidecar", sidecarBin, append([]string{"-mode", "decrypt", "-out-file", filepath.Join(dir, "out.rec"),
		"-metrics", c.decMetrics}, common...)...)
	proctest.WaitHTTP(b, "http://"+c.decMetrics+"/healthz", 20*time.Second)
	// Every plaintext track is pulled by the encrypting sidecar, and every
	// SFrame track by the relay for the decrypting sidecar.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ready := proctest.Metrics(b, "http://"+c.encMetrics+"/metrics")["sidecar_relay_subscribers"] >= float64(len(tracks))
		for _, p := range c.pubs {
			ready = ready && p.Subscribers() > 0
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("chain not subscribed end to end")
		}
	}
	return c
}

// send publishes objects at rate per second (spread over the tracks, each
// with its own group/object numbering) for d, and returns how many.
func (c *sidecarChain) send(tracks []string, sizes map[string]int, rate float64, d time.Duration, groupEvery int) int {
	start := time.Now()
	payloads := map[string][]byte{}
	for t, n := range sizes {
		payloads[t] = make([]byte, n)
	}
	ids := map[string]int{}
	sent := 0
	for time.Since(start) < d {
		due := int(time.Since(start).Seconds() * rate)
		for ; sent < due; sent++ {
			t := tracks[sent%len(tracks)]
			n := ids[t]
			ids[t]++
			p := payloads[t]
			p[0], p[1] = byte(n), byte(n>>8)
			c.pubs[t].WriteObject(uint64(n/groupEvery), 0, uint64(n%groupEvery), p)
		}
		time.Sleep(200 * time.Microsecond)
	}
	return sent
}

func (c *sidecarChain) delivered(b *testing.B, want float64) float64 {
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := proctest.Metrics(b, "http://"+c.decMetrics+"/metrics")["sidecar_objects_out_total"]
		if got >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkSidecarLoopback measures, through real processes on loopback:
// the highest rate of 1200-byte objects (one track) that crosses encrypt ->
// relay -> decrypt with 0 loss, stepping the offered rate up; and the
// latency each sidecar adds (receive to sink write, from its histogram) at
// 30 tracks of 30 fps video (4000-byte frames) plus 50 pps audio (160 bytes).
func BenchmarkSidecarLoopback(b *testing.B) {
	b.Run("max-rate-1200B", func(b *testing.B) {
		c := startChain(b, []string{"t0"})
		best, total := 0.0, 0.0
		for _, rate := range []float64{5000, 10000, 15000, 20000, 30000, 40000} {
			const d = 2 * time.Second
			sent := c.send([]string{"t0"}, map[string]int{"t0": 1200}, rate, d, 100)
			total += float64(sent)
			got := c.delivered(b, total)
			achieved := float64(sent) / d.Seconds() // the publisher may fall short of the offer
			b.Logf("offered %6.0f obj/s, achieved %6.0f: sent %d, delivered %.0f of %.0f in total", rate, achieved, sent, got, total)
			if got < total {
				enc := proctest.Metrics(b, "http://"+c.encMetrics+"/metrics")
				dec := proctest.Metrics(b, "http://"+c.decMetrics+"/metrics")
				b.Logf("loss: encrypt in %.0f out %.0f drops %.0f; decrypt in %.0f out %.0f drops %.0f errors %.0f",
					enc["sidecar_objects_in_total"], enc["sidecar_objects_out_total"], enc["sidecar_drops_total"],
					dec["sidecar_objects_in_total"], dec["sidecar_objects_out_total"], dec["sidecar_drops_total"], dec["sidecar_errors_total"])
				break
			}
			best = max(best, achieved)
		}
		b.ReportMetric(best, "obj/s-0loss")
	})
	b.Run("latency-30tracks", func(b *testing.B) {
		var tracks []string
		sizes := map[string]int{}
		for i := range 30 {
			v, a := fmt.Sprint("v", i), fmt.Sprint("a", i)
			tracks = append(tracks, v, a)
			sizes[v], sizes[a] = 4000, 160
		}
		c := startChain(b, tracks)
		// 30 tracks x 30 fps + 30 tracks x 50 pps = 2400 objects/s. The
		// send loop interleaves video and audio tracks evenly, so offer the
		// combined rate and let each track's share follow.
		sent := c.send(tracks, sizes, 2400, 5*time.Second, 30)
		got := c.delivered(b, float64(sent))
		enc := proctest.Metrics(b, "http://"+c.encMetrics+"/metrics")
		dec := proctest.Metrics(b, "http://"+c.decMetrics+"/metrics")
		b.Logf("sent %d, delivered %.0f; encrypt p50 <= %s p99 <= %s; decrypt p50 <= %s p99 <= %s", sent, got,
			latencyQuantile(enc, 0.5), latencyQuantile(enc, 0.99), latencyQuantile(dec, 0.5), latencyQuantile(dec, 0.99))
		b.ReportMetric(float64(sent)-got, "lost")
	})
}
