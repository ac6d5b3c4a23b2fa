package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/moqsframe/moqsframe/internal/proctest"
)

// frameSink receives the decrypting sidecar's RTP output and records which
// numbered frames arrived.
type frameSink struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  map[int]bool
	news chan struct{} // signalled on every new frame
}

func newFrameSink(t *testing.T) *frameSink {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadBuffer(8 << 20) // a reconnect replays seconds of frames at once
	s := &frameSink{conn: conn, got: map[int]bool{}, news: make(chan struct{}, 1)}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 2048)
		var p rtp.Packet
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if p.Unmarshal(buf[:n]) != nil {
				continue
			}
			// "frame N payload" after the NAL header byte.
			f := strings.Fields(string(p.Payload[min(1, len(p.Payload)):]))
			if len(f) < 2 || f[0] != "frame" {
				continue
			}
			i, err := strconv.Atoi(f[1])
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.got[i] = true
			s.mu.Unlock()
			select {
			case s.news <- struct{}{}:
			default:
			}
		}
	}()
	return s
}

func (s *frameSink) addr() string { return s.conn.LocalAddr().String() }

func (s *frameSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

func (s *frameSink) has(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[i]
}

// waitFor waits until cond holds, checking at every new frame.
func (s *frameSink) waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-s.news:
		case <-deadline.C:
			t.Fatalf("waiting for %s: %d frames received after %v", what, s.count(), timeout)
		}
	}
}

// encoder sends numbered one-packet H.264 frames at a live rate (a real
// encoder's pace: the outage is measured against it), a keyframe every 25.
type encoder struct {
	conn net.Conn
	mu   sync.Mutex
	sent int
	stop chan struct{}
	done chan struct{}
}

func startEncoder(t *testing.T, addr string, fps int) *encoder {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	e := &encoder{conn: conn, stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { e.halt(); conn.Close() })
	go func() {
		defer close(e.done)
		tick := time.NewTicker(time.Second / time.Duration(fps))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-e.stop:
				return
			case <-tick.C:
			}
			nal := byte(0x41)
			if i%25 == 0 {
				nal = 0x65
			}
			p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i * 90000 / fps), Marker: true},
				Payload: append([]byte{nal}, fmt.Sprintf("frame %d payload", i)...)}
			b, _ := p.Marshal()
			if _, err := conn.Write(b); err != nil {
				return
			}
			e.mu.Lock()
			e.sent = i + 1
			e.mu.Unlock()
		}
	}()
	return e
}

func (e *encoder) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sent
}

// halt stops sending and returns how many frames were sent.
func (e *encoder) halt() int {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	<-e.done
	return e.count()
}

// TestRelayOutage kills the relay with SIGKILL mid-stream (no connection
// close) and restarts it after 3 s and after 20 s. Both sidecars run with
// their default -relay-timeout (5 s) and -reconnect-buffer (10 s).
//
//   - 3 s: nothing is lost end to end: the encrypting sidecar publishes
//     what the dead relay may not have forwarded again, and the receiver
//     drops the copies it already had (counted as duplicates).
//   - 20 s: the outage outlasts the buffer. Every frame that did not
//     arrive is counted by the receiver (gaps in the sender's SFrame
//     counters), exactly; the sender counts at least as many as evicted
//     from its buffer (it cannot know what the dead relay forwarded).
func TestRelayOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a relay process; 40 s")
	}
	relayBin, sidecarBin := proctest.Build(t, relayPkg), proctest.Build(t, sidecarPkg)
	for _, outage := range []time.Duration{3 * time.Second, 20 * time.Second} {
		t.Run(outage.String(), func(t *testing.T) {
			t.Parallel()
			relayOutage(t, relayBin, sidecarBin, outage)
		})
	}
}

func relayOutage(t *testing.T, relayBin, sidecarBin string, outage time.Duration) {
	keyFile := writeKeyFile(t, `{"suite": 4, "base_key": "00112233445566778899aabbccddeeff"}`)
	relayAddr, startRelay := restartableRelay(t, relayBin)
	relay := startRelay()
	sink := newFrameSink(t)
	rtpIn, encM, decM := proctest.FreeUDPAddr(t), proctest.FreeTCPAddr(t), proctest.FreeTCPAddr(t)
	common := []string{"-relay", relayAddr, "-insecure", "-namespace", "outage/live", "-key-file", keyFile}
	enc := proctest.Start(t, "encrypting sidecar", sidecarBin, append([]string{"-mode", "encrypt", "-rtp-video", rtpIn, "-metrics", encM}, common...)...)
	proctest.Start(t, "decrypting sidecar", sidecarBin, append([]string{"-mode", "decrypt", "-tracks", "video", "-rtp-out-video", sink.addr(), "-metrics", decM}, common...)...)
	encURL, decURL := "http://"+encM+"/metrics", "http://"+decM+"/metrics"
	proctest.WaitMetric(t, encURL, "sidecar_relay_subscribers", 1, 30*time.Second)

	const fps = 50
	e := startEncoder(t, rtpIn, fps)
	sink.waitFor(t, "100 frames before the outage", 30*time.Second, func() bool { return sink.count() >= 100 })
	relay.Kill()
	killed := time.Now()
	// The relay is gone but the sidecars only notice after -relay-timeout;
	// until then /healthz still says ok. Then it must say so.
	waitHealthz(t, enc, "http://"+encM+"/healthz", 503, 30*time.Second)
	t.Logf("the encrypting sidecar's /healthz said 503 %v after the kill", time.Since(killed).Round(100*time.Millisecond))
	time.Sleep(time.Until(killed.Add(outage))) // the fault itself: the relay stays down this long
	startRelay()
	proctest.WaitMetric(t, encURL, "sidecar_relay_reconnects_total", 1, 60*time.Second)
	proctest.WaitMetric(t, decURL, "sidecar_relay_reconnects_total", 1, 60*time.Second)
	waitHealthz(t, enc, "http://"+encM+"/healthz", 200, 30*time.Second)
	after := e.count()
	sink.waitFor(t, "frames after the reconnect", 60*time.Second, func() bool { return sink.has(after + 100) })
	sent := e.halt()
	sink.waitFor(t, "the last frame", 30*time.Second, func() bool { return sink.has(sent - 1) })

	encMetrics, decMetrics := proctest.Metrics(t, encURL), proctest.Metrics(t, decURL)
	received := sink.count()
	lost := int(decMetrics["sidecar_objects_lost_total"] + decMetrics["sidecar_objects_missing"])
	unpublished := int(encMetrics["sidecar_objects_unpublished_total"])
	t.Logf("outage %v: frames sent %d, received %d (%d missing); receiver counted lost %d, duplicates %.0f; sender counted unpublished %d",
		outage, sent, received, sent-received, lost, decMetrics["sidecar_duplicates_total"], unpublished)
	if in := int(encMetrics["sidecar_objects_in_total"]); in != sent {
		t.Fatalf("encrypting sidecar took %d of %d frames (RTP ingest loss is not what this test is about)", in, sent)
	}
	if lost != sent-received {
		t.Errorf("receiver counted %d lost, but %d of %d frames are missing", lost, sent-received, sent)
	}
	if outage <= 3*time.Second {
		if received != sent {
			t.Errorf("%d of %d frames missing after a %v outage; want none", sent-received, sent, outage)
		}
		if unpublished != 0 {
			t.Errorf("sender counted %d unpublished after a %v outage; want 0", unpublished, outage)
		}
	} else if unpublished < sent-received {
		t.Errorf("sender counted %d unpublished, fewer than the %d frames lost", unpublished, sent-received)
	}
}

// writeKeyFile writes a static key file into a fresh temporary folder.
func writeKeyFile(t *testing.T, json string) string {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(keyFile, []byte(json), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile
}

// restartableRelay returns a relay address and a function that starts a
// moq-relay process on it (again after a kill), waiting until it is healthy.
func restartableRelay(t *testing.T, relayBin string) (addr string, start func() *proctest.Proc) {
	addr, metrics := proctest.FreeUDPAddr(t), proctest.FreeTCPAddr(t)
	return addr, func() *proctest.Proc {
		r := proctest.Start(t, "moq-relay", relayBin, "-listen", addr, "-metrics", metrics)
		r.WaitHealthy(t, "http://"+metrics+"/healthz", 20*time.Second)
		return r
	}
}

// waitHealthz polls a sidecar's /healthz until it answers code.
func waitHealthz(t *testing.T, p *proctest.Proc, url string, code int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if got := proctest.HTTPStatus(url); got == code {
			return
		}
		if p.Exited() {
			t.Fatalf("%s exited", p)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not %d after %v", url, code, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
