// Package mediatest is real encoder output for tests: a corpus of ffmpeg
// encodings (x264 with slices, intra refresh and B-frames; libvpx VP8 and
// VP9; libx265; Opus with DTX) captured as RTP with RTCP on the same port,
// and ffmpeg's decoder as the judge (framemd5). Used by package rtpingest's
// corpus test and by the integration test that sends the corpus through
// the sidecars and a relay.
package mediatest

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// Stream is an encoder configuration of the corpus.
type Stream struct {
	Name    string
	Codec   string
	Args    []string // ffmpeg input and encoder options
	RefMux  string   // muxer of the encoder's own output
	Media   string   // SDP media
	RTPMap  string   // SDP rtpmap encoding, e.g. H264/90000
	PT      int
	Keys    int  // keyframes the encoder makes
	DTX     bool // replace the silent half's packets by DTX packets
	Packets bool // compare packets (-c copy), not decoded frames
}

var testsrc = []string{"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "2"}

// Corpus is the encodings of the corpus: 2 s of 320x240 testsrc at 25 fps,
// or 1 s of tone and 1 s of silence.
var Corpus = []Stream{
	{Name: "h264-slices", Codec: "h264", RefMux: "h264", Media: "video", RTPMap: "H264/90000", PT: 96, Keys: 2,
		Args: append(slices.Clone(testsrc), "-c:v", "libx264", "-threads", "1", "-crf", "14", "-g", "25", "-sc_threshold", "0", "-bf", "0", "-x264-params", "slices=4")},
	{Name: "h264-intra-refresh", Codec: "h264", RefMux: "h264", Media: "video", RTPMap: "H264/90000", PT: 96, Keys: 1,
		Args: append(slices.Clone(testsrc), "-c:v", "libx264", "-threads", "1", "-crf", "14", "-bf", "0", "-x264-params", "intra-refresh=1:keyint=10")},
	{Name: "h264-bframes", Codec: "h264", RefMux: "h264", Media: "video", RTPMap: "H264/90000", PT: 96, Keys: 2,
		Args: append(slices.Clone(testsrc), "-c:v", "libx264", "-threads", "1", "-crf", "14", "-g", "25", "-sc_threshold", "0", "-bf", "3")},
	{Name: "vp8", Codec: "vp8", RefMux: "ivf", Media: "video", RTPMap: "VP8/90000", PT: 96, Keys: 2,
		Args: append(slices.Clone(testsrc), "-c:v", "libvpx", "-threads", "1", "-g", "25", "-b:v", "200k")},
	{Name: "vp9", Codec: "vp9", RefMux: "ivf", Media: "video", RTPMap: "VP9/90000", PT: 96, Keys: 2,
		Args: append(slices.Clone(testsrc), "-c:v", "libvpx-vp9", "-threads", "1", "-g", "25", "-b:v", "200k", "-deadline", "realtime", "-cpu-used", "8")},
	{Name: "h265", Codec: "h265", RefMux: "hevc", Media: "video", RTPMap: "H265/90000", PT: 96, Keys: 2,
		Args: append(slices.Clone(testsrc), "-c:v", "libx265", "-preset", "ultrafast", "-crf", "20",
			"-x265-params", "pools=1:frame-threads=1:keyint=25:min-keyint=25:scenecut=0:bframes=0:log-level=error")},
	{Name: "opus-dtx", Codec: "opus", RefMux: "ogg", Media: "audio", RTPMap: "opus/48000/2", PT: 111, DTX: true, Packets: true,
		Args: []string{"-f", "lavfi", "-i", "sine=f=440:d=1:sample_rate=48000,apad=pad_dur=1", "-ac", "1", "-c:a", "libopus", "-b:a", "24k"}},
}

// FFmpeg is an ffmpeg command that logs only errors and overwrites.
func FFmpeg(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ffmpeg", append([]string{"-hide_banner", "-loglevel", "error", "-nostdin", "-y"}, args...)...)
}

var sentinel = []byte("end of capture")

// Capture runs the encoder with two outputs of the same encoding: RTP
// with RTCP multiplexed to a socket of the test, and the reference file.
func Capture(t testing.TB, s Stream, ref string) [][]byte {
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
		s.PT, port, port, s.RefMux, ref)
	args := append(slices.Clone(s.Args), "-map", "0", "-f", "tee", tee)
	if out, err := FFmpeg(ctx, args...).CombinedOutput(); err != nil {
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

// MD5Line is a frame (or packet) of ffmpeg's framemd5 output.
type MD5Line struct {
	Size int
	Sum  string
}

// FrameMD5 runs ffmpeg's framemd5 muxer: decoded frames, or with packets
// the encoded packets (-c copy).
func FrameMD5(t testing.TB, packets bool, input ...string) []MD5Line {
	sums, err := RunFrameMD5(packets, input...)
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

// RunFrameMD5 is FrameMD5 returning its error.
func RunFrameMD5(packets bool, input ...string) ([]MD5Line, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Every decoded frame once, whatever its timestamp (no frame rate
	// conversion).
	args := append(slices.Clone(input), "-fps_mode", "passthrough")
	if packets {
		args = append(args, "-c", "copy")
	}
	cmd := FFmpeg(ctx, append(args, "-f", "framemd5", "-")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ffmpeg framemd5: %v\n%s", err, stderr.String())
	}
	var sums []MD5Line
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ",")
		if strings.HasPrefix(line, "#") || len(f) < 6 {
			continue
		}
		var size int
		fmt.Sscan(strings.TrimSpace(f[4]), &size)
		sums = append(sums, MD5Line{Size: size, Sum: strings.TrimSpace(f[5])})
	}
	return sums, nil
}

// MakeDTX replaces the RTP payload of each packet of the silent second half
// (the most common payload there) with a 1-byte TOC-only packet, what an
// encoder in DTX sends (RFC 6716 §3.1, a frame of 0 bytes). ffmpeg 5.1's
// libopus wrapper has no DTX option, hence the rewrite. It returns the
// datagrams, the number of packets replaced, and the MD5 of the encoder's
// packet of digital silence that was replaced.
func MakeDTX(t testing.TB, dgrams [][]byte) (out [][]byte, n int, silentMD5 string) {
	count := map[string]int{}
	var common string
	for _, d := range dgrams[len(dgrams)/2:] {
		if IsRTCP(d) {
			continue
		}
		pl := string(d[12:])
		if count[pl]++; count[pl] > count[common] {
			common = pl
		}
	}
	silentMD5 = fmt.Sprintf("%x", md5.Sum([]byte(common)))
	n = 0
	for i, d := range dgrams {
		if !IsRTCP(d) && string(d[12:]) == common {
			dgrams[i] = append(d[:12:12], d[12])
			n++
		}
	}
	if n < 20 {
		t.Fatalf("%d silent packets", n)
	}
	return dgrams, n, silentMD5
}

// IsRTCP reports whether a datagram on an RTP port is RTCP (RFC 5761 §4).
func IsRTCP(d []byte) bool { return d[1] >= 192 && d[1] <= 223 }

// FirstDiff returns the index of the first difference of a and b.
func FirstDiff(a, b []MD5Line) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// FreePortPair returns an even UDP port whose successor is free too (RTP
// and RTCP for ffmpeg).
func FreePortPair(t testing.TB) int {
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

// WaitBound waits until ffmpeg has bound port, as /proc/net/udp shows
// (binding it ourselves to find out would race with ffmpeg's bind), or
// until ffmpeg ends.
func WaitBound(t testing.TB, port int, res <-chan struct{}) {
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
