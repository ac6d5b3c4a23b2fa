package wish

import (
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Codecs the endpoints negotiate: the ones the sidecar's depacketizers
// (rtpingest) and packetizers handle. AV1 is not among them.
var (
	H264 = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: videoFeedback}, PayloadType: 102}
	H264Baseline = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", RTCPFeedback: videoFeedback}, PayloadType: 127}
	VP8 = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000,
		RTCPFeedback: videoFeedback}, PayloadType: 96}
	VP9 = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000,
		SDPFmtpLine: "profile-id=0", RTCPFeedback: videoFeedback}, PayloadType: 98}
	Opus = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000,
		Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111}
	videoFeedback = []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
)

// Supported reports whether an rtpmap encoding name (as in an SDP offer)
// is one of the negotiated codecs.
func Supported(encoding string) bool {
	switch encoding {
	case "h264", "H264", "vp8", "VP8", "vp9", "VP9", "opus", "OPUS", "Opus":
		return true
	}
	return false
}

// NewAPI returns a pion API for H.264, VP8, VP9 and Opus with the default
// interceptors (NACK, RTCP reports). If ips is not empty, ICE gathers
// host candidates on those addresses only (loopback included when named);
// otherwise on every non-loopback interface.
func NewAPI(ips []net.IP) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range []webrtc.RTPCodecParameters{H264, H264Baseline, VP8, VP9} {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, err
		}
	}
	if err := m.RegisterCodec(Opus, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	if len(ips) > 0 {
		loop := false
		for _, ip := range ips {
			loop = loop || ip.IsLoopback()
		}
		se.SetIncludeLoopbackCandidate(loop)
		se.SetIPFilter(func(ip net.IP) bool {
			for _, a := range ips {
				if a.Equal(ip) {
					return true
				}
			}
			return false
		})
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// ListenIPs returns the addresses ICE should use for an HTTP listen
// address: its IP if it names one, else nil (every interface).
func ListenIPs(addr string) []net.IP {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	if host == "localhost" {
		return []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return nil
	}
	return []net.IP{ip}
}

// ParseOffer parses an SDP offer before pion sees it and checks that at
// least one media section offers a supported codec. Errors are
// *RequestError (400 ErrMalformedOffer, 422 ErrNoCodec).
func ParseOffer(offer string) (*sdp.SessionDescription, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return nil, Refuse(http.StatusBadRequest, ErrMalformedOffer, "%v", err)
	}
	if len(d.MediaDescriptions) == 0 {
		return nil, Refuse(http.StatusBadRequest, ErrMalformedOffer, "no media section (m=)")
	}
	var offered []string
	for _, md := range d.MediaDescriptions {
		for _, a := range md.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			// rtpmap:<pt> <encoding>/<clock>[/<channels>]
			_, enc, _ := cut(a.Value, ' ')
			enc, _, _ = cut(enc, '/')
			if Supported(enc) {
				return &d, nil
			}
			offered = append(offered, enc)
		}
	}
	return nil, Refuse(http.StatusUnprocessableEntity, ErrNoCodec, "offered %v; this endpoint takes H264 (packetization-mode=1) and opus", offered)
}

func cut(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// Negotiate answers offer on pc, waiting for every local ICE candidate so
// the answer is complete (trickling from the server side is not needed:
// its candidates are known at once).
func Negotiate(pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", Refuse(http.StatusBadRequest, ErrMalformedOffer, "%v", err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", Refuse(http.StatusUnprocessableEntity, ErrNoCodec, "%v", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", Refuse(http.StatusBadRequest, ErrNegotiation, "%v", err)
	}
	select {
	case <-gathered:
	case <-time.After(10 * time.Second):
		return "", Refuse(http.StatusServiceUnavailable, ErrNegotiation, "ICE gathering did not finish")
	}
	return pc.LocalDescription().SDP, nil
}

// AddCandidates adds the candidates of a trickle ICE PATCH to pc. A
// fragment with another ufrag is an ICE restart, refused (422): it would
// need a new answer.
func AddCandidates(pc *webrtc.PeerConnection, f *SDPFrag) error {
	if f.Ufrag != "" {
		if rd := pc.RemoteDescription(); rd != nil && !strings.Contains(rd.SDP, "a=ice-ufrag:"+f.Ufrag+"\r\n") &&
			!strings.Contains(rd.SDP, "a=ice-ufrag:"+f.Ufrag+"\n") {
			// A new ufrag is an ICE restart, which needs a new answer.
			return Refuse(http.StatusUnprocessableEntity, ErrBadPatch, "ICE restart is not supported; DELETE the session and POST a new offer")
		}
	}
	for _, c := range f.Candidates {
		init := webrtc.ICECandidateInit{Candidate: c.Candidate}
		if c.Mid != "" {
			init.SDPMid = &c.Mid
		}
		if c.MLine >= 0 {
			i := uint16(c.MLine)
			init.SDPMLineIndex = &i
		}
		if err := pc.AddICECandidate(init); err != nil {
			return err
		}
	}
	return nil
}
