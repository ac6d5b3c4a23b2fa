package rtpingest_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/internal/mediatest"
	"github.com/moqsframe/moqsframe/rtpegress"
	"github.com/moqsframe/moqsframe/rtpingest"
)

// TestFFmpegCorpus: real encoder output, captured as RTP from ffmpeg,
// through Receiver and Packetizer to an ffmpeg decoder; then the same
// packets with injected faults.
//
// Clean: every frame comes out, and ffmpeg decodes the re-packetized
// stream to frames with the MD5s of decoding the encoder's own output.
// Faults: delivered, dropped and lost frames and every counter equal what
// a model of the faults predicts.
func TestFFmpegCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: ffmpeg corpus")
	}
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not installed (scripts/setup.sh installs it)")
	}
	for _, s := range mediatest.Corpus {
		t.Run(s.Name, func(t *testing.T) {
			dir := t.TempDir()
			ref := filepath.Join(dir, "ref."+s.RefMux)
			dgrams := mediatest.Capture(t, s, ref)
			var (
				dtx       int
				silentMD5 string
			)
			if s.DTX {
				dgrams, dtx, silentMD5 = mediatest.MakeDTX(t, dgrams)
			}
			refSums := mediatest.FrameMD5(t, s.Packets, "-i", ref)
			if s.DTX { // DTX packets are not frames: the reference is the rest
				refSums = slices.DeleteFunc(refSums, func(f mediatest.MD5Line) bool { return f.Sum == silentMD5 })
			}

			frames, st := ingest(t, rtpingest.Codec(s.Codec), dgrams)
			if len(frames) != len(refSums) || st.Dropped != 0 || st.Lost != 0 || st.Malformed != 0 || st.Late != 0 ||
				st.Duplicate != 0 || st.Foreign != 0 || int(st.Empty) != dtx {
				t.Fatalf("%d frames of %d; stats %+v", len(frames), len(refSums), st)
			}
			keys := 0
			for _, f := range frames {
				if f.Keyframe {
					keys++
				}
			}
			if rtpingest.Codec(s.Codec) != rtpingest.Opus && keys != s.Keys {
				t.Errorf("%d keyframes, the encoder made %d", keys, s.Keys)
			}
			got := egress(t, s, frames, dir)
			if !slices.Equal(got, refSums) {
				t.Fatalf("ffmpeg decodes %d frames of the re-packetized stream, the encoder's output %d; first difference at %d",
					len(got), len(refSums), mediatest.FirstDiff(got, refSums))
			}
			t.Logf("%s clean: %d datagrams (%d RTCP, %d DTX), frames in %d, out %d, dropped 0; decoded MD5s equal",
				s.Name, len(dgrams), st.RTCP, dtx, len(refSums), len(frames))

			faulty, want := injectFaults(t, dgrams, frames, rtpingest.Codec(s.Codec))
			fframes, fst := ingest(t, rtpingest.Codec(s.Codec), faulty)
			if len(fframes) != int(want.Frames) {
				t.Errorf("faults: %d frames delivered, model %d", len(fframes), want.Frames)
			}
			fst.Delivered, fst.Discarded, fst.Packets, fst.SenderReports, fst.RecvReports, fst.Byes = 0, 0, 0, 0, 0, 0
			if fst != want {
				t.Errorf("faults: stats\n got %+v\nwant %+v", fst, want)
			}
			t.Logf("%s faults: %d datagrams; frames delivered %d, damaged and dropped %d; packets lost %d, duplicate %d, padding/DTX %d, RTCP %d",
				s.Name, len(faulty), fst.Frames, fst.Dropped, fst.Lost, fst.Duplicate, fst.Empty, fst.RTCP)
		})
	}
}

// ingest runs datagrams through a Receiver and checks the counter identity.
func ingest(t *testing.T, c rtpingest.Codec, dgrams [][]byte) ([]rtpingest.Frame, rtpingest.Stats) {
	r, err := rtpingest.NewReceiver(rtpingest.Config{Codec: c})
	if err != nil {
		t.Fatal(err)
	}
	var frames []rtpingest.Frame
	collect := func() {
		for f, ok := r.Next(); ok; f, ok = r.Next() {
			f.Data = bytes.Clone(f.Data)
			frames = append(frames, f)
		}
	}
	for _, d := range dgrams {
		r.Push(d)
		collect()
	}
	r.Flush()
	collect()
	st := r.Stats()
	if st.Sum() != st.Packets || st.Packets != uint64(len(dgrams)) || st.Buffered != 0 {
		t.Fatalf("counters add up to %d of %d datagrams: %+v", st.Sum(), len(dgrams), st)
	}
	return frames, st
}

// egress packetizes frames to an ffmpeg that reads them with an SDP and
// returns the MD5s of what it decodes.
func egress(t *testing.T, s mediatest.Stream, frames []rtpingest.Frame, dir string) []mediatest.MD5Line {
	port := mediatest.FreePortPair(t)
	sdp := fmt.Sprintf("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=rtpegress\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=%s %d RTP/AVP %d\r\na=rtpmap:%d %s\r\n",
		s.Media, port, s.PT, s.PT, s.RTPMap)
	if rtpingest.Codec(s.Codec) == rtpingest.H264 {
		sdp += fmt.Sprintf("a=fmtp:%d packetization-mode=1\r\n", s.PT)
	}
	sdpPath := filepath.Join(dir, "out.sdp")
	if err := os.WriteFile(sdpPath, []byte(sdp), 0o600); err != nil {
		t.Fatal(err)
	}
	type result struct {
		sums []mediatest.MD5Line
		err  error
	}
	res := make(chan result, 1)
	// ffmpeg ignores an RTCP BYE read while it probes the stream, and
	// otherwise waits 10 s without packets before its input ends; it stops
	// instead after the frames sent (-frames). A decoder that holds frames
	// back for B-frame reordering gives them out when a keyframe follows:
	// the first keyframe is sent again after the stream for that, and its
	// decoded copies are past -frames.
	limit := "-frames:v"
	if s.Media == "audio" {
		limit = "-frames:a"
	}
	ended := make(chan struct{}) // closed when ffmpeg ends
	go func() {
		defer close(ended)
		sums, err := mediatest.RunFrameMD5(s.Packets, "-protocol_whitelist", "file,udp,rtp", "-i", sdpPath, limit, strconv.Itoa(len(frames)))
		res <- result{sums, err}
	}()
	mediatest.WaitBound(t, port, ended)
	conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p, err := rtpegress.NewPacketizer(rtpegress.Config{Codec: rtpegress.Codec(s.Codec), PayloadType: uint8(s.PT), SSRC: 0x5eed, Sequence: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if _, err := p.WriteFrame(conn, f.Timestamp, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	if s.Media == "video" {
		ts := frames[len(frames)-1].Timestamp
		for i := range 20 {
			if _, err := p.WriteFrame(conn, ts+uint32(i+1)*90000, frames[0].Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.sums
	case <-time.After(60 * time.Second):
		t.Fatal("ffmpeg did not end after the BYE")
		return nil
	}
}
