package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/internal/proctest"
	"github.com/moqsframe/moqsframe/moq"
	"github.com/moqsframe/moqsframe/rtpingest"
	"github.com/moqsframe/moqsframe/sidecar"
)

const (
	relayPkg   = "github.com/moqsframe/moqsframe/cmd/moq-relay"
	sidecarPkg = "github.com/moqsframe/moqsframe/cmd/sframe-sidecar"
)

// expectedFrame is a frame depacketized directly from the encoder's RTP,
// with the MoQ IDs the sidecar must give it.
type expectedFrame struct {
	group, object uint64
	data          []byte
}

// rtpTee receives the encoder's RTP, forwards every packet unchanged to the
// sidecar, and depacketizes its own copy with the same rules: the reference
// the decrypted output is compared with.
type rtpTee struct {
	conn   net.PacketConn
	fwd    net.Conn
	mu     sync.Mutex
	frames []expectedFrame
	marked chan struct{} // closed when the end marker was read
}

// teeEnd marks the end of the encoder's packets: sent after the encoder
// exited, it is read after them (one socket; loopback keeps send order).
var teeEnd = []byte("end of the encoder's RTP")

func startTee(t *testing.T, to string) *rtpTee {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conn.(*net.UDPConn).SetReadBuffer(8 << 20)
	fwd, err := net.Dial("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	tee := &rtpTee{conn: conn, fwd: fwd, marked: make(chan struct{})}
	go func() {
		// The same receiver as the sidecar's: the same frames and IDs.
		rc, err := rtpingest.NewReceiver(rtpingest.Config{Codec: rtpingest.H264})
		if err != nil {
			panic(err)
		}
		buf := make([]byte, 65536)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if bytes.Equal(buf[:n], teeEnd) {
				close(tee.marked)
				continue
			}
			fwd.Write(buf[:n])
			rc.Push(buf[:n])
			for f, ok := rc.Next(); ok; f, ok = rc.Next() {
				tee.mu.Lock()
				tee.frames = append(tee.frames, expectedFrame{f.Group, f.Object, bytes.Clone(f.Data)})
				tee.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); fwd.Close() })
	return tee
}

func (t *rtpTee) addr() string { return t.conn.LocalAddr().String() }

// drain waits until every packet the encoder sent before now was read.
func (t *rtpTee) drain(tb testing.TB) {
	tb.Helper()
	c, err := net.Dial("udp", t.addr())
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(teeEnd); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-t.marked:
	case <-time.After(20 * time.Second):
		tb.Fatal("the tee never read the end marker")
	}
}

func (t *rtpTee) expected() []expectedFrame {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]expectedFrame(nil), t.frames...)
}

// ensureFFmpeg installs ffmpeg with the project's own setup script if it is
// missing.
func ensureFFmpeg(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		out, err := exec.Command("../scripts/setup.sh").CombinedOutput()
		if err != nil {
			t.Logf("scripts/setup.sh: %v\n%s", err, out)
		}
	}
	proctest.RequireCommand(t, "ffmpeg", "run scripts/setup.sh (installs Debian's ffmpeg)")
}

// mitmRelay is a hostile relay: it forwards the SFrame track it reads from
// the real relay to its own subscribers, but swaps the object IDs of two
// objects of group 1 (SFrame metadata binds the IDs, so both must fail) and
// injects one malformed object into group 2.
type mitmRelay struct {
	ln  *moq.Listener
	pub *moq.Publisher
}

func startMITM(t *testing.T, upstream string, ns []string, track string) *mitmRelay {
	tlsConf, err := moq.DevTLSConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	m := &mitmRelay{}
	cfg := &moq.Config{OnAnnounce: func(*moq.Session, []string) error { return nil }}
	m.pub = moq.NewPublisher(ns, track, cfg)
	cfg.OnSubscribe = func(*moq.Session, []string, string) (*moq.Publisher, error) { return m.pub, nil }
	if m.ln, err = moq.Listen("127.0.0.1:0", tlsConf, cfg); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := m.ln.Accept(context.Background()); err != nil {
				return
			}
		}
	}()
	up := subscribeRelay(t, upstream, ns, track)
	go func() {
		var held *moq.Object
		for {
			o, err := up.ReadObject(context.Background())
			if err != nil {
				return
			}
			switch {
			case o.GroupID == 1 && o.ObjectID == 3:
				held = &o
				continue
			case o.GroupID == 1 && o.ObjectID == 4 && held != nil:
				m.pub.WriteObject(1, o.SubgroupID, 3, o.Payload)       // object 4's payload as 3
				m.pub.WriteObject(1, held.SubgroupID, 4, held.Payload) // object 3's payload as 4
				continue
			}
			m.pub.WriteObject(o.GroupID, o.SubgroupID, o.ObjectID, o.Payload)
			if o.GroupID == 2 && o.ObjectID == 5 {
				m.pub.WriteObject(2, o.SubgroupID, 6000, []byte{0xff}) // truncated SFrame header
			}
		}
	}()
	t.Cleanup(func() { m.pub.Close(); m.ln.Close() })
	return m
}

func subscribeRelay(t *testing.T, addr string, ns []string, track string) *moq.Subscription {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := moq.Dial(ctx, addr, &moq.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	for {
		sub, err := sess.Subscribe(ctx, ns, track)
		if err == nil {
			return sub
		}
		if ctx.Err() != nil {
			t.Fatalf("subscribe %v/%s at %s: %v", ns, track, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readRecords(t *testing.T, path string) []sidecar.Record {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []sidecar.Record
	rd := bufio.NewReader(f)
	for {
		r, err := sidecar.ReadRecord(rd)
		if errors.Is(err, io.EOF) {
			return recs
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
}

// TestEndToEndWithFFmpeg: ffmpeg encodes a test pattern to H.264 RTP → the
// encrypting sidecar → the relay (a separate process) → the decrypting
// sidecar → a file. Every frame arrives byte-exact with 0 lost, the relay's
// forwarded payloads never contain plaintext, and a relay that swaps two
// objects' IDs causes exactly those two to fail authentication.
func TestEndToEndWithFFmpeg(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with ffmpeg and four processes")
	}
	ensureFFmpeg(t)
	relayBin, sidecarBin := proctest.Build(t, relayPkg), proctest.Build(t, sidecarPkg)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.json")
	os.WriteFile(keyFile, []byte(`{"suite": 4, "base_key": "00112233445566778899aabbccddeeff"}`), 0o600)
	ns := []string{"e2e.example", "live"}
	sidecarArgs := func(mode, relay, metrics string, extra ...string) []string {
		return append([]string{"-mode", mode, "-relay", relay, "-insecure", "-namespace", "e2e.example/live",
			"-key-file", keyFile, "-metrics", metrics}, extra...)
	}

	relayAddr, relayMetrics := proctest.FreeUDPAddr(t), proctest.FreeTCPAddr(t)
	proctest.Start(t, "moq-relay", relayBin, "-listen", relayAddr, "-metrics", relayMetrics)
	proctest.WaitHTTP(t, "http://"+relayMetrics+"/healthz", 20*time.Second)

	rtpIn, encMetrics := proctest.FreeUDPAddr(t), proctest.FreeTCPAddr(t)
	enc := proctest.Start(t, "encrypting sidecar", sidecarBin, sidecarArgs("encrypt", relayAddr, encMetrics, "-rtp-video", rtpIn)...)
	proctest.WaitHTTP(t, "http://"+encMetrics+"/healthz", 20*time.Second)

	outFile, decMetrics := filepath.Join(dir, "out.rec"), proctest.FreeTCPAddr(t)
	dec := proctest.Start(t, "decrypting sidecar", sidecarBin,
		sidecarArgs("decrypt", relayAddr, decMetrics, "-tracks", "video", "-out-file", outFile)...)

	// An observer subscribed through the relay sees exactly what it forwards.
	observed := subscribeRelay(t, relayAddr, ns, "video")
	var relayed [][]byte
	var relayedMu sync.Mutex
	go func() {
		for {
			o, err := observed.ReadObject(context.Background())
			if err != nil {
				return
			}
			relayedMu.Lock()
			relayed = append(relayed, o.Payload)
			relayedMu.Unlock()
		}
	}()
	// The hostile relay and a second decrypting sidecar behind it.
	mitm := startMITM(t, relayAddr, ns, "video")
	mitmOut, mitmMetrics := filepath.Join(dir, "mitm.rec"), proctest.FreeTCPAddr(t)
	proctest.Start(t, "sidecar behind hostile relay", sidecarBin,
		sidecarArgs("decrypt", mitm.ln.Addr().String(), mitmMetrics, "-tracks", "video", "-out-file", mitmOut)...)

	// The relay subscribes upstream once for all its subscribers.
	proctest.WaitMetric(t, "http://"+encMetrics+"/metrics", "sidecar_relay_subscribers", 1, 20*time.Second)
	for deadline := time.Now().Add(20 * time.Second); mitm.pub.Subscribers() < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("sidecar behind the hostile relay never subscribed")
		}
	}
	proctest.WaitHTTP(t, "http://"+decMetrics+"/healthz", 20*time.Second)
	// Every downstream subscription is in place at the relay (the observer,
	// the decrypting sidecar and the hostile relay's upstream) before the
	// encoder starts.
	proctest.WaitMetric(t, "http://"+relayMetrics+"/metrics", "moq_relay_subscribers", 3, 20*time.Second)

	tee := startTee(t, rtpIn)
	ffmpeg := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-t", "4",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-bf", "0",
		"-pix_fmt", "yuv420p", "-payload_type", "96", "-f", "rtp", "rtp://"+tee.addr()+"?pkt_size=1200")
	if out, err := ffmpeg.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	tee.drain(t) // last packets through the tee
	want := tee.expected()
	if len(want) < 100 {
		t.Fatalf("only %d frames from ffmpeg; want about 120", len(want))
	}
	proctest.WaitMetric(t, "http://"+decMetrics+"/metrics", "sidecar_objects_out_total", float64(len(want)), 20*time.Second)
	mitmStats := proctest.Metrics(t, "http://"+mitmMetrics+"/metrics")
	for wait := time.Now(); mitmStats["sidecar_objects_out_total"]+mitmStats["sidecar_errors_total"] < float64(len(want)+1) && time.Since(wait) < 10*time.Second; {
		time.Sleep(50 * time.Millisecond)
		mitmStats = proctest.Metrics(t, "http://"+mitmMetrics+"/metrics")
	}
	encStats := proctest.Metrics(t, "http://"+encMetrics+"/metrics")
	decStats := proctest.Metrics(t, "http://"+decMetrics+"/metrics")
	if err := dec.Stop(t); err != nil {
		t.Errorf("decrypting sidecar exit: %v", err)
	}
	enc.Stop(t)

	// Every frame, byte-exact, under its IDs: 0 lost.
	expected := map[frameID][]byte{}
	for _, w := range want {
		expected[frameID{w.group, w.object}] = w.data
	}
	checkFrames(t, readRecords(t, outFile), expected)
	if decStats["sidecar_auth_failures_total"] != 0 || decStats["sidecar_errors_total"] != 0 || encStats["sidecar_drops_total"] != 0 {
		t.Errorf("decrypt auth failures %v errors %v, encrypt drops %v",
			decStats["sidecar_auth_failures_total"], decStats["sidecar_errors_total"], encStats["sidecar_drops_total"])
	}
	t.Logf("%d frames in %d groups, %d bytes, byte-exact; sidecar latency p50 <= %s, p99 <= %s (decrypt side)",
		len(want), want[len(want)-1].group+1, int(decStats["sidecar_bytes_out_total"]),
		latencyQuantile(decStats, 0.5), latencyQuantile(decStats, 0.99))

	// The relay only ever carried ciphertext.
	relayedMu.Lock()
	defer relayedMu.Unlock()
	if len(relayed) != len(want) {
		t.Errorf("observer saw %d objects through the relay, want %d", len(relayed), len(want))
	}
	for _, ct := range relayed {
		for _, f := range want {
			probe := f.data[len(f.data)/2:]
			probe = probe[:min(32, len(probe))]
			if bytes.Contains(ct, f.data) || (len(probe) == 32 && bytes.Contains(ct, probe)) {
				t.Fatal("relay forwarded a payload containing plaintext")
			}
		}
	}
	// Swapped IDs: exactly the two swapped objects fail authentication, the
	// injected one is malformed, and everything else still decrypts.
	if mitmStats["sidecar_auth_failures_total"] != 2 || mitmStats["sidecar_errors_total"] != 3 ||
		mitmStats["sidecar_objects_out_total"] != float64(len(want)-2) {
		t.Errorf("behind the hostile relay: %v auth failures, %v errors, %v decrypted; want 2, 3 and %d",
			mitmStats["sidecar_auth_failures_total"], mitmStats["sidecar_errors_total"], mitmStats["sidecar_objects_out_total"], len(want)-2)
	}
}

// latencyQuantile returns the upper bound of the histogram bucket holding
// quantile q of the sidecar's latency.
func latencyQuantile(m map[string]float64, q float64) string {
	total := m["sidecar_latency_seconds_count"]
	for _, le := range []string{"1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1"} {
		if m[fmt.Sprintf("sidecar_latency_seconds_bucket{le=%q}", le)] >= q*total {
			return le + "s"
		}
	}
	return ">1s"
}
