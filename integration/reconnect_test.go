package integration

import (
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/moqsframe/moqsframe/internal/proctest"
)

// sendFrames sends n single-NAL H.264 frames over RTP (a keyframe every
// 10), numbered from first, and returns the Annex-B frames the sidecar
// should produce.
func sendFrames(t *testing.T, conn net.Conn, first, n int, seq *uint16) [][]byte {
	var frames [][]byte
	for i := first; i < first+n; i++ {
		nal := []byte{0x41} // non-IDR slice
		if i%10 == 0 {
			nal[0] = 0x65 // IDR
		}
		nal = append(nal, []byte(fmt.Sprintf("frame %d payload", i))...)
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: *seq, Timestamp: uint32(i * 3000), Marker: true}, Payload: nal}
		*seq++
		b, _ := p.Marshal()
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, append([]byte{0, 0, 0, 1}, nal...))
		time.Sleep(2 * time.Millisecond)
	}
	return frames
}

// TestSidecarsReconnectAfterRelayRestart: the relay process is stopped and
// a new one started on the same address; both sidecars reconnect (with
// backoff), re-announce and re-subscribe, and media flows again.
func TestSidecarsReconnectAfterRelayRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four processes")
	}
	relayBin, sidecarBin := proctest.Build(t, relayPkg), proctest.Build(t, sidecarPkg)
	dir := t.TempDir()
	keyFile := writeKeyFile(t, `{"suite": 5, "base_key": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}`)
	relayAddr, startRelay := restartableRelay(t, relayBin)
	relay := startRelay()
	rtpIn, encMetrics, decMetrics := proctest.FreeUDPAddr(t), proctest.FreeTCPAddr(t), proctest.FreeTCPAddr(t)
	outFile := filepath.Join(dir, "out.rec")
	common := []string{"-relay", relayAddr, "-insecure", "-namespace", "reconnect/live", "-key-file", keyFile}
	proctest.Start(t, "encrypting sidecar", sidecarBin, append([]string{"-mode", "encrypt", "-rtp-video", rtpIn, "-metrics", encMetrics}, common...)...)
	dec := proctest.Start(t, "decrypting sidecar", sidecarBin, append([]string{"-mode", "decrypt", "-tracks", "video", "-out-file", outFile, "-metrics", decMetrics}, common...)...)
	enc := "http://" + encMetrics + "/metrics"
	proctest.WaitMetric(t, enc, "sidecar_relay_subscribers", 1, 20*time.Second)

	conn, err := net.Dial("udp", rtpIn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var seq uint16
	want := sendFrames(t, conn, 0, 30, &seq)
	proctest.WaitMetric(t, "http://"+decMetrics+"/metrics", "sidecar_objects_out_total", 30, 20*time.Second)

	relay.Stop(t)
	startRelay()
	proctest.WaitMetric(t, enc, "sidecar_relay_reconnects_total", 1, 30*time.Second)
	proctest.WaitMetric(t, "http://"+decMetrics+"/metrics", "sidecar_relay_reconnects_total", 1, 30*time.Second)
	proctest.WaitMetric(t, enc, "sidecar_relay_subscribers", 1, 30*time.Second)

	want = append(want, sendFrames(t, conn, 30, 30, &seq)...)
	proctest.WaitMetric(t, "http://"+decMetrics+"/metrics", "sidecar_objects_out_total", 60, 20*time.Second)
	if err := dec.Stop(t); err != nil {
		t.Errorf("decrypting sidecar exit: %v", err)
	}
	expected := map[frameID][]byte{}
	for i, f := range want { // a keyframe, so a new group, every 10 frames
		expected[frameID{uint64(i / 10), uint64(i % 10)}] = f
	}
	checkFrames(t, readRecords(t, outFile), expected)
}
