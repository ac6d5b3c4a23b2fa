package whep

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/moqsframe/moqsframe/webrtc/internal/wish"
)

// TestViewerStartsAtKeyframe connects a pion viewer and writes objects as
// the decrypting sidecar does: video objects before a group start are
// skipped (counted), the group start and what follows reach the viewer, and
// Opus reaches it at once.
func TestViewerStartsAtKeyframe(t *testing.T) {
	loop := []net.IP{net.IPv4(127, 0, 0, 1)}
	srv, err := New(Config{Tracks: []Track{{"video", H264}, {"audio", Opus}}, Token: "t", ICEIPs: loop,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	mux := http.NewServeMux()
	srv.Register(mux)
	hs := httptest.NewServer(mux)
	defer hs.Close()

	api, _ := wish.NewAPI(loop)
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	}
	var videoPackets, audioPackets atomic.Int64
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			if tr.Kind() == webrtc.RTPCodecTypeVideo {
				videoPackets.Add(1)
			} else {
				audioPackets.Add(1)
			}
		}
	})
	connected := make(chan struct{})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			close(connected)
		}
	})
	offer, _ := pc.CreateOffer(nil)
	gathered := webrtc.GatheringCompletePromise(pc)
	pc.SetLocalDescription(offer)
	<-gathered
	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/whep", strings.NewReader(pc.LocalDescription().SDP))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer t")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %d %s", res.StatusCode, answer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
	case <-time.After(20 * time.Second):
		t.Fatal("viewer never connected")
	}

	// The server's side of DTLS may finish after the viewer's.
	for deadline := time.Now().Add(20 * time.Second); srv.connectedViewers() < 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("server never saw the viewer connected")
		}
	}
	frame := append([]byte{0, 0, 0, 1, 0x41}, make([]byte, 500)...) // a P slice
	idr := append([]byte{0, 0, 0, 1, 0x65}, make([]byte, 500)...)
	for obj := uint64(3); obj < 6; obj++ { // the middle of group 0
		if err := srv.WriteObject("video", 0, 0, obj, frame); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(srv.waiting); got != 3 {
		t.Fatalf("%v frames skipped, want 3", got)
	}
	srv.WriteObject("video", 1, 0, 0, idr)
	srv.WriteObject("video", 1, 0, 1, frame)
	srv.WriteObject("audio", 7, 0, 13, []byte{31 << 3, 1, 2, 3}) // mid-group audio is independent
	if got := testutil.ToFloat64(srv.sent); got != 3 {
		t.Fatalf("%v frames sent, want 3", got)
	}
	for deadline := time.Now().Add(20 * time.Second); videoPackets.Load() < 2 || audioPackets.Load() < 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("viewer got %d video and %d audio packets", videoPackets.Load(), audioPackets.Load())
		}
	}
	if err := srv.WriteObject("audio", 7, 0, 14, nil); err == nil {
		t.Error("empty Opus packet accepted")
	}
}
