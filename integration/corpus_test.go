package integration

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/internal/mediatest"
	"github.com/moqsframe/moqsframe/internal/proctest"
	"github.com/moqsframe/moqsframe/rtpegress"
	"github.com/moqsframe/moqsframe/rtpingest"
)

// TestCorpusThroughSidecars sends real encoder output (the ffmpeg corpus of
// internal/mediatest: x264 with slices, intra refresh and B-frames, libvpx
// VP8 and VP9, libx265, Opus with DTX) through an encrypting sidecar, a
// relay process and a decrypting sidecar, whose -rtp-out-* goes to an
// ffmpeg decoder reading the SDP of -rtp-out-sdp. Every frame arrives, and
// ffmpeg decodes them to frames with the MD5s of decoding the encoder's
// own output.
func TestCorpusThroughSidecars(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: ffmpeg corpus through sidecar processes")
	}
	ensureFFmpeg(t)
	relayBin, sidecarBin := proctest.Build(t, relayPkg), proctest.Build(t, sidecarPkg)
	keyFile := writeKeyFile(t, `{"suite": 4, "base_key": "00112233445566778899aabbccddeeff"}`)
	relayAddr, startRelay := restartableRelay(t, relayBin)
	startRelay()
	for _, s := range mediatest.Corpus {
		t.Run(s.Name, func(t *testing.T) { corpusThroughSidecars(t, s, sidecarBin, relayAddr, keyFile) })
	}
}

func corpusThroughSidecars(t *testing.T, s mediatest.Stream, sidecarBin, relayAddr, keyFile string) {
	dir := t.TempDir()
	ref := filepath.Join(dir, "ref."+s.RefMux)
	dgrams := mediatest.Capture(t, s, ref)
	var silentMD5 string
	if s.DTX {
		dgrams, _, silentMD5 = mediatest.MakeDTX(t, dgrams)
	}
	want := mediatest.FrameMD5(t, s.Packets, "-i", ref)
	want = slices.DeleteFunc(want, func(f mediatest.MD5Line) bool { return s.DTX && f.Sum == silentMD5 })

	track, in, out := "video", "-rtp-video", "-rtp-out-video"
	if s.Media == "audio" {
		track, in, out = "audio", "-rtp-audio", "-rtp-out-audio"
	}
	rtpIn, encM, decM := proctest.FreeUDPAddr(t), proctest.FreeTCPAddr(t), proctest.FreeTCPAddr(t)
	port := mediatest.FreePortPair(t)
	sdp := filepath.Join(dir, "out.sdp")
	common := []string{"-relay", relayAddr, "-insecure", "-namespace", "corpus/" + s.Name, "-key-file", keyFile, "-log-level", "warn"}
	if s.Media == "video" {
		common = append(common, "-video-codec", s.Codec)
	}
	proctest.Start(t, "encrypting sidecar", sidecarBin, append([]string{"-mode", "encrypt", in, rtpIn, "-metrics", encM}, common...)...)
	dec := proctest.Start(t, "decrypting sidecar", sidecarBin, append([]string{"-mode", "decrypt", "-tracks", track,
		out, fmt.Sprintf("127.0.0.1:%d", port), "-rtp-out-sdp", sdp, "-metrics", decM}, common...)...)
	dec.WaitHealthy(t, "http://"+decM+"/healthz", 30*time.Second)
	proctest.WaitMetric(t, "http://"+encM+"/metrics", "sidecar_relay_subscribers", 1, 30*time.Second)

	// The decoder: ffmpeg reads the decrypting sidecar's SDP and stops
	// after as many frames as the encoder made.
	limit := "-frames:v"
	if s.Media == "audio" {
		limit = "-frames:a"
	}
	type result struct {
		sums []mediatest.MD5Line
		err  error
	}
	res := make(chan result, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		sums, err := mediatest.RunFrameMD5(s.Packets, "-protocol_whitelist", "file,udp,rtp", "-i", sdp, limit, strconv.Itoa(len(want)))
		res <- result{sums, err}
	}()
	mediatest.WaitBound(t, port, ended)

	conn, err := net.Dial("udp", rtpIn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	replay(t, conn, dgrams, s)

	select {
	case r := <-res:
		if r.err != nil {
			t.Fatal(r.err)
		}
		m := proctest.Metrics(t, "http://"+encM+"/metrics")
		frames, dropped := m["sidecar_rtp_"+track+"_frames_total"], m["sidecar_rtp_"+track+"_frames_dropped_total"]
		outN := proctest.Metrics(t, "http://"+decM+"/metrics")["sidecar_objects_out_total"]
		if !slices.Equal(r.sums, want) {
			t.Fatalf("ffmpeg decoded %d frames from the decrypting sidecar, %d from the encoder's own output; first difference at %d (sidecar frames in %v, dropped %v, decrypted %v)",
				len(r.sums), len(want), mediatest.FirstDiff(r.sums, want), frames, dropped, outN)
		}
		if dropped != 0 {
			t.Errorf("the encrypting sidecar dropped %v frames of a clean stream", dropped)
		}
		extra := 0
		if s.Media == "video" {
			extra = 20
		}
		t.Logf("%s through sidecars and relay: %d datagrams, %d frames (+%d repeated keyframes); sealed %v, dropped %v; ffmpeg decoded %d frames from the decrypting sidecar's RTP (%v decrypted so far), MD5s equal to the encoder's own output",
			s.Name, len(dgrams), len(want), extra, frames, dropped, len(r.sums), outN)
	case <-time.After(90 * time.Second):
		t.Fatalf("the decoder did not get %d frames in 90 s", len(want))
	}
}

// replay sends the captured datagrams to the encrypting sidecar at the pace
// the encoder made them (RTP timestamps; the sidecar's RTP output stamps
// frames by arrival). For video, the stream's first keyframe follows 20
// times more, as a live encoder's next frames would: a decoder holding
// frames back for B-frame reordering gives them out when a keyframe comes.
func replay(t *testing.T, conn net.Conn, dgrams [][]byte, s mediatest.Stream) {
	clock := 90000.0
	if s.Media == "audio" {
		clock = 48000
	}
	var (
		start    time.Time
		ts0, ts  uint32
		ssrc     uint32
		seq      uint16
		haveBase bool
	)
	rc, err := rtpingest.NewReceiver(rtpingest.Config{Codec: rtpingest.Codec(s.Codec)})
	if err != nil {
		t.Fatal(err)
	}
	var key []byte
	for _, d := range dgrams {
		if !mediatest.IsRTCP(d) && len(d) >= 12 {
			ts = uint32(d[4])<<24 | uint32(d[5])<<16 | uint32(d[6])<<8 | uint32(d[7])
			ssrc = uint32(d[8])<<24 | uint32(d[9])<<16 | uint32(d[10])<<8 | uint32(d[11])
			seq = uint16(d[2])<<8 | uint16(d[3])
			if !haveBase {
				start, ts0, haveBase = time.Now(), ts, true
			}
			// Pacing a live source, as the encoder did: not a wait for a
			// condition of the system under test.
			time.Sleep(time.Until(start.Add(time.Duration(float64(ts-ts0) / clock * float64(time.Second)))))
		}
		if _, err := conn.Write(d); err != nil {
			t.Fatal(err)
		}
		rc.Push(d)
		for f, ok := rc.Next(); ok && key == nil; f, ok = rc.Next() {
			if f.Keyframe {
				key = slices.Clone(f.Data)
			}
		}
	}
	if s.Media != "video" {
		return
	}
	if key == nil {
		t.Fatal("no keyframe in the stream")
	}
	p, err := rtpegress.NewPacketizer(rtpegress.Config{Codec: rtpegress.Codec(s.Codec), PayloadType: uint8(s.PT), SSRC: ssrc, Sequence: seq + 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		time.Sleep(40 * time.Millisecond) // a live encoder's frame interval
		if _, err := p.WriteFrame(conn, ts+uint32(i+1)*3600, key); err != nil {
			t.Fatal(err)
		}
	}
}
