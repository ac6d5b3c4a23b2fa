package whip

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/moqsframe/moqsframe/webrtc/internal/wish"
)

type frameSink struct {
	mu     sync.Mutex
	frames map[string]int
}

func (s *frameSink) Submit(_ context.Context, track string, _, _, _ uint64, _ []byte) error {
	s.mu.Lock()
	s.frames[track]++
	s.mu.Unlock()
	return nil
}

func (s *frameSink) count(track string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frames[track]
}

var loopback = []net.IP{net.IPv4(127, 0, 0, 1)}

// startServer runs a WHIP server with cfg (its Sink a frameSink, ICE on
// loopback) behind an httptest server, both closed when the test ends.
func startServer(t *testing.T, cfg Config) (*frameSink, *Server, *httptest.Server) {
	t.Helper()
	sink := &frameSink{frames: map[string]int{}}
	cfg.Sink, cfg.ICEIPs, cfg.Logger = sink, loopback, slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	mux := http.NewServeMux()
	srv.Register(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return sink, srv, hs
}

// publisher is a pion peer that offers one H.264 track, as OBS does.
type publisher struct {
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticSample
}

func newPublisher(t *testing.T) *publisher { return newPublisherOf(t, wish.H264.RTPCodecCapability) }

func newPublisherOf(t *testing.T, c webrtc.RTPCodecCapability) *publisher {
	api, err := wish.NewAPI(loopback)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	track, err := webrtc.NewTrackLocalStaticSample(c, "video", "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	return &publisher{pc: pc, track: track}
}

func (p *publisher) offer(t *testing.T) string {
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return p.pc.LocalDescription().SDP
}

func post(t *testing.T, url, token, contentType, body string) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

const av1Only = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n" +
	"a=mid:0\r\na=sendonly\r\na=rtpmap:96 AV1/90000\r\n"

// TestWHIPSessionAndBadInput publishes H.264 from a pion peer, then sends
// the bad requests an attacker or a misconfigured encoder would: each gets
// its 4xx and reason, is counted, and the running session keeps delivering
// frames.
func TestWHIPSessionAndBadInput(t *testing.T) {
	sink, srv, hs := startServer(t, Config{Token: "s3cret", MaxSessions: 1, KeyframeInterval: 100 * time.Millisecond})

	pub := newPublisher(t)
	res, answer := post(t, hs.URL+"/whip", "s3cret", "application/sdp", pub.offer(t))
	if res.StatusCode != http.StatusCreated || !strings.HasPrefix(res.Header.Get("Location"), "/whip/session/") {
		t.Fatalf("POST: %d %q %s", res.StatusCode, res.Header.Get("Location"), answer)
	}
	if !strings.Contains(answer, "b=TIAS:") {
		t.Error("answer announces no bitrate limit")
	}
	if err := pub.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { // an IDR access unit every 33 ms
		idr := append([]byte{0, 0, 0, 1, 0x65}, make([]byte, 3000)...)
		for ctx.Err() == nil {
			pub.track.WriteSample(media.Sample{Data: idr, Duration: 33 * time.Millisecond})
			time.Sleep(33 * time.Millisecond) // the encoder's frame clock
		}
	}()
	waitFrames := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); sink.count("video") < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d video frames submitted, want %d", sink.count("video"), n)
			}
		}
	}
	waitFrames(5)

	second := newPublisher(t).offer(t)
	for _, c := range []struct {
		name, token, ctype, body string
		status                   int
		reason                   string
	}{
		{"wrong token", "guess", "application/sdp", second, http.StatusUnauthorized, "unauthorized"},
		{"no token", "", "application/sdp", second, http.StatusUnauthorized, "unauthorized"},
		{"malformed SDP", "s3cret", "application/sdp", "v=0\r\nthis is not SDP\r\n", http.StatusBadRequest, "malformed_offer"},
		{"no supported codec", "s3cret", "application/sdp", av1Only, http.StatusUnprocessableEntity, "no_codec"},
		{"wrong content type", "s3cret", "text/plain", second, http.StatusUnsupportedMediaType, "content_type"},
		{"too many sessions", "s3cret", "application/sdp", second, http.StatusTooManyRequests, "too_many_sessions"},
	} {
		before := testutil.ToFloat64(srv.ep.Refused.WithLabelValues(c.reason))
		res, body := post(t, hs.URL+"/whip", c.token, c.ctype, c.body)
		if res.StatusCode != c.status || !strings.HasPrefix(body, "whip: ") {
			t.Errorf("%s: %d %q, want %d with a reason", c.name, res.StatusCode, body, c.status)
		}
		if got := testutil.ToFloat64(srv.ep.Refused.WithLabelValues(c.reason)) - before; got != 1 {
			t.Errorf("%s: refused{reason=%q} went up by %v", c.name, c.reason, got)
		}
		t.Logf("%s: %d %s", c.name, res.StatusCode, strings.TrimSpace(body))
	}
	// The first session is unaffected.
	waitFrames(sink.count("video") + 5)

	del := func() int {
		req, _ := http.NewRequest(http.MethodDelete, hs.URL+res.Header.Get("Location"), nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if s := del(); s != http.StatusOK || srv.Sessions() != 0 {
		t.Fatalf("DELETE: %d, %d sessions left", s, srv.Sessions())
	}
	if s := del(); s != http.StatusNotFound {
		t.Fatalf("second DELETE: %d", s)
	}
}

// TestWHIPBitrateLimit: a publisher far above -whip-max-bitrate is closed
// after 3 seconds over it, and counted; its stream is free again.
func TestWHIPBitrateLimit(t *testing.T) {
	sink, srv, hs := startServer(t, Config{MaxBitrate: 100_000})
	pub := newPublisher(t)
	res, answer := post(t, hs.URL+"/whip", "", "application/sdp", pub.offer(t))
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %d %s", res.StatusCode, answer)
	}
	if !strings.Contains(answer, "b=TIAS:100000") {
		t.Error("answer does not announce the limit")
	}
	pub.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { // about 800 kbit/s, 8 times the limit
		idr := append([]byte{0, 0, 0, 1, 0x65}, make([]byte, 3000)...)
		for ctx.Err() == nil {
			pub.track.WriteSample(media.Sample{Data: idr, Duration: 33 * time.Millisecond})
			time.Sleep(33 * time.Millisecond)
		}
	}()
	for deadline := time.Now().Add(30 * time.Second); testutil.ToFloat64(srv.bitrateClosed) < 1 || srv.Sessions() != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("session not closed: %d sessions, %d frames", srv.Sessions(), sink.count("video"))
		}
	}
	if sink.count("video") == 0 {
		t.Error("no frame before the limit applied")
	}
	if res, body := post(t, hs.URL+"/whip", "", "application/sdp", newPublisher(t).offer(t)); res.StatusCode != http.StatusCreated {
		t.Errorf("stream not free after the close: %d %s", res.StatusCode, body)
	}
}

// TestWHIPVP8: a VP8 track goes through the same depacketizer as
// -rtp-video -video-codec vp8 (rtpingest), key frames start groups.
func TestWHIPVP8(t *testing.T) {
	sink, _, hs := startServer(t, Config{KeyframeInterval: 100 * time.Millisecond})
	pub := newPublisherOf(t, wish.VP8.RTPCodecCapability)
	res, answer := post(t, hs.URL+"/whip", "", "application/sdp", pub.offer(t))
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %d %s", res.StatusCode, answer)
	}
	if err := pub.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { // a VP8 key frame (RFC 6386 §9.1: P bit 0, start code, 320x240) every 33 ms
		key := append([]byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00}, make([]byte, 2000)...)
		for ctx.Err() == nil {
			pub.track.WriteSample(media.Sample{Data: key, Duration: 33 * time.Millisecond})
			time.Sleep(33 * time.Millisecond) // the encoder's frame clock
		}
	}()
	for deadline := time.Now().Add(20 * time.Second); sink.count("video") < 5; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d VP8 frames submitted, want 5", sink.count("video"))
		}
	}
}
