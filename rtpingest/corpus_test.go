package rtpingest_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/rtpegress"
	"github.com/moqsframe/moqsframe/rtpingest"
)

// corpusStream is an encoder configuration of the corpus.
type corpusStream struct {
	name    string
	codec   rtpingest.Codec
	args    []string // ffmpeg input and encoder options
	refMux  string   // muxer of the encoder's own output
	media   string   // SDP media
	rtpmap  string
	pt      int
	keys    int  // keyframes the encoder makes
	dtx     bool // replace the silent half's packets by DTX packets
	packets bool // compare packets (-c copy), not decoded frames
}

var testsrc = []string{"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "2"}

var corpus = []corpusStream{
	{name: "h264-slices", codec: rtpingest.H264, refMux: "h264", media: "video", rtpmap: "H264/90000", pt: 96, keys: 2,
		args: append(slices.Clone(testsrc), "-c:v", "libx264", "-threads", "1", "-crf", "14", "-g", "25", "-sc_threshold", "0", "-bf", "0", "-x264-params", "slices=4")},
	{name: "h264-intra-refresh", codec: rtpingest.H264, refMux: "h264", media: "video", rtpmap: "H264/90000", pt: 96, keys: 1,
		args: append(slices.Clone(testsrc), "-c:v", "libx264", "-threads", "1", "-crf", "14", "-bf", "0", "-x264-params", "intra-refresh=1:keyint=10")},
	{name: "h264-bframes", codec: rtpingest.H264, refMux: "h264", media: "video", rtpmap: "H264/90000", pt: 96, keys: 2,
		args: append(slices.Clone(testsrc), "-c:v", "libx264", "-threads", "1", "-crf", "14", "-g", "25", "-sc_threshold", "0", "-bf", "3")},
	{name: "vp8", codec: rtpingest.VP8, refMux: "ivf", media: "video", rtpmap: "VP8/90000", pt: 96, keys: 2,
		args: append(slices.Clone(testsrc), "-c:v", "libvpx", "-threads", "1", "-g", "25", "-b:v", "200k")},
	{name: "vp9", codec: rtpingest.VP9, refMux: "ivf", media: "video", rtpmap: "VP9/90000", pt: 96, keys: 2,
		args: append(slices.Clone(testsrc), "-c:v", "libvpx-vp9", "-threads", "1", "-g", "25", "-b:v", "200k", "-deadline", "realtime", "-cpu-used", "8")},
	{name: "h265", codec: rtpingest.H265, refMux: "hevc", media: "video", rtpmap: "H265/90000", pt: 96, keys: 2,
		args: append(slices.Clone(testsrc), "-c:v", "libx265", "-preset", "ultrafast", "-crf", "20",
			"-x265-params", "pools=1:frame-threads=1:keyint=25:min-keyint=25:scenecut=0:bframes=0:log-level=error")},
	{name: "opus-dtx", codec: rtpingest.Opus, refMux: "ogg", media: "audio", rtpmap: "opus/48000/2", pt: 111, dtx: true, packets: true,
		args: []string{"-f", "lavfi", "-i", "sine=f=440:d=1:sample_rate=48000,apad=pad_dur=1", "-ac", "1", "-c:a", "libopus", "-b:a", "24k"}},
}

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
	for _, s := range corpus {
		t.Run(s.name, func(t *testing.T) {
			dir := t.TempDir()
			ref := filepath.Join(dir, "ref."+s.refMux)
			dgrams := capture(t, s, ref)
			var dtx int
			if s.dtx {
				dgrams, dtx = makeDTX(t, dgrams)
			}
			refSums := frameMD5(t, s.packets, "-i", ref)
			if s.dtx { // DTX packets are not frames: the reference is the rest
				refSums = slices.DeleteFunc(refSums, func(f md5Line) bool { return f.sum == silentMD5 })
			}

			frames, st := ingest(t, s.codec, dgrams)
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
			if s.codec != rtpingest.Opus && keys != s.keys {
				t.Errorf("%d keyframes, the encoder made %d", keys, s.keys)
			}
			got := egress(t, s, frames, dir)
			if !slices.Equal(got, refSums) {
				t.Fatalf("ffmpeg decodes %d frames of the re-packetized stream, the encoder's output %d; first difference at %d",
					len(got), len(refSums), firstDiff(got, refSums))
			}
			t.Logf("%s clean: %d datagrams (%d RTCP, %d DTX), frames in %d, out %d, dropped 0; decoded MD5s equal",
				s.name, len(dgrams), st.RTCP, dtx, len(refSums), len(frames))

			faulty, want := injectFaults(t, dgrams, frames, s.codec)
			fframes, fst := ingest(t, s.codec, faulty)
			if len(fframes) != int(want.Frames) {
				t.Errorf("faults: %d frames delivered, model %d", len(fframes), want.Frames)
			}
			fst.Delivered, fst.Discarded, fst.Packets, fst.SenderReports, fst.RecvReports, fst.Byes = 0, 0, 0, 0, 0, 0
			if fst != want {
				t.Errorf("faults: stats\n got %+v\nwant %+v", fst, want)
			}
			t.Logf("%s faults: %d datagrams; frames delivered %d, damaged and dropped %d; packets lost %d, duplicate %d, padding/DTX %d, RTCP %d",
				s.name, len(faulty), fst.Frames, fst.Dropped, fst.Lost, fst.Duplicate, fst.Empty, fst.RTCP)
		})
	}
}

func firstDiff(a, b []md5Line) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func ffmpeg(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ffmpeg", append([]string{"-hide_banner", "-loglevel", "error", "-nostdin", "-y"}, args...)...)
}

var sentinel = []byte("end of capture")

// capture runs the encoder with two outputs of the same encoding: RTP
// with RTCP multiplexed to a socket of the test, and the reference file.
func capture(t *testing.T, s corpusStream, ref string) [][]byte {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.UDPConn).SetReadBuffer(8 << 20)
	port := conn.LocalAddr().(*net.UDPAddr).Port
	done := make(chan [][]byte)
	go func() {
		var got [][]byte
		buf := make([]byte, 65536)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil || bytes.Equal(buf[:n], sentinel) {
				done <- got
				return
			}
			got = append(got, bytes.Clone(buf[:n]))
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tee := fmt.Sprintf("[f=rtp:strict=experimental:payload_type=%d]rtp://127.0.0.1:%d?rtcpport=%d&pkt_size=400|[f=%s]%s",
		s.pt, port, port, s.refMux, ref)
	args := append(slices.Clone(s.args), "-map", "0", "-f", "tee", tee)
	if out, err := ffmpeg(ctx, args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg encode: %v\n%s", err, out)
	}
	// ffmpeg has exited: everything it sent is queued before this.
	c, err := net.Dial("udp", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write(sentinel)
	c.Close()
	return <-done
}

type md5Line struct {
	size int
	sum  string
}

// frameMD5 runs ffmpeg's framemd5 muxer: decoded frames, or with packets
// the encoded packets (-c copy).
func frameMD5(t *testing.T, packets bool, input ...string) []md5Line {
	sums, err := runFrameMD5(packets, input...)
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

func runFrameMD5(packets bool, input ...string) ([]md5Line, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Every decoded frame once, whatever its timestamp (no frame rate
	// conversion).
	args := append(slices.Clone(input), "-fps_mode", "passthrough")
	if packets {
		args = append(args, "-c", "copy")
	}
	cmd := ffmpeg(ctx, append(args, "-f", "framemd5", "-")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ffmpeg framemd5: %v\n%s", err, stderr.String())
	}
	var sums []md5Line
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ",")
		if strings.HasPrefix(line, "#") || len(f) < 6 {
			continue
		}
		var size int
		fmt.Sscan(strings.TrimSpace(f[4]), &size)
		sums = append(sums, md5Line{size, strings.TrimSpace(f[5])})
	}
	return sums, nil
}

// silentMD5 is the MD5 of the encoder's packet of digital silence, which
// makeDTX replaces.
var silentMD5 string

// makeDTX replaces the RTP payload of each packet of the silent second half
// (the most common payload there) with a 1-byte TOC-only packet, what an
// encoder in DTX sends (RFC 6716 §3.1, a frame of 0 bytes). ffmpeg 5.1's
// libopus wrapper has no DTX option, hence the rewrite.
func makeDTX(t *testing.T, dgrams [][]byte) ([][]byte, int) {
	count := map[string]int{}
	var common string
	for _, d := range dgrams[len(dgrams)/2:] {
		if isRTCP(d) {
			continue
		}
		pl := string(d[12:])
		if count[pl]++; count[pl] > count[common] {
			common = pl
		}
	}
	silentMD5 = fmt.Sprintf("%x", md5.Sum([]byte(common)))
	n := 0
	for i, d := range dgrams {
		if !isRTCP(d) && string(d[12:]) == common {
			dgrams[i] = append(d[:12:12], d[12])
			n++
		}
	}
	if n < 20 {
		t.Fatalf("%d silent packets", n)
	}
	return dgrams, n
}

func isRTCP(d []byte) bool { return d[1] >= 192 && d[1] <= 223 }

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
func egress(t *testing.T, s corpusStream, frames []rtpingest.Frame, dir string) []md5Line {
	port := freePortPair(t)
	sdp := fmt.Sprintf("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=rtpegress\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=%s %d RTP/AVP %d\r\na=rtpmap:%d %s\r\n",
		s.media, port, s.pt, s.pt, s.rtpmap)
	if s.codec == rtpingest.H264 {
		sdp += fmt.Sprintf("a=fmtp:%d packetization-mode=1\r\n", s.pt)
	}
	sdpPath := filepath.Join(dir, "out.sdp")
	if err := os.WriteFile(sdpPath, []byte(sdp), 0o600); err != nil {
		t.Fatal(err)
	}
	type result struct {
		sums []md5Line
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
	if s.media == "audio" {
		limit = "-frames:a"
	}
	ended := make(chan struct{}) // closed when ffmpeg ends
	go func() {
		defer close(ended)
		sums, err := runFrameMD5(s.packets, "-protocol_whitelist", "file,udp,rtp", "-i", sdpPath, limit, strconv.Itoa(len(frames)))
		res <- result{sums, err}
	}()
	waitBound(t, port, ended)
	conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p, err := rtpegress.NewPacketizer(rtpegress.Config{Codec: rtpegress.Codec(s.codec), PayloadType: uint8(s.pt), SSRC: 0x5eed, Sequence: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if _, err := p.WriteFrame(conn, f.Timestamp, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	if s.media == "video" {
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

// freePortPair returns an even UDP port whose successor is free too (RTP
// and RTCP for ffmpeg).
func freePortPair(t *testing.T) int {
	for range 100 {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port &^ 1
		c.Close()
		a, err1 := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		b, err2 := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port+1))
		if a != nil {
			a.Close()
		}
		if b != nil {
			b.Close()
		}
		if err1 == nil && err2 == nil {
			return port
		}
	}
	t.Fatal("no free UDP port pair")
	return 0
}

// waitBound waits until ffmpeg has bound port, as /proc/net/udp shows
// (binding it ourselves to find out would race with ffmpeg's bind), or
// until ffmpeg ends.
func waitBound(t *testing.T, port int, res <-chan struct{}) {
	want := fmt.Sprintf(":%04X ", port)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
			b, _ := os.ReadFile(f)
			for _, line := range strings.Split(string(b), "\n") {
				if fields := strings.Fields(line); len(fields) > 1 && strings.HasSuffix(fields[1]+" ", want) {
					return
				}
			}
		}
		select {
		case <-res:
			t.Fatal("ffmpeg ended before binding its RTP port")
		case <-time.After(2 * time.Millisecond): // polling a condition, not pacing
		}
	}
	t.Fatal("ffmpeg did not bind its RTP port")
}
