// Package whip is a WHIP endpoint (RFC 9725) for the encrypting sidecar:
// OBS or a browser POSTs an SDP offer and publishes WebRTC media; each
// incoming H.264 or Opus track is depacketized into frames (package
// rtpingest, as for -rtp-video and -rtp-audio) and submitted to the sidecar
// as MoQ objects, one MoQ track per media track, sealed as any other input.
//
// URLs: POST /whip publishes the tracks "video" and "audio"; POST
// /whip/NAME publishes "NAME/video" and "NAME/audio". The 201 answer's
// Location (/whip/session/ID) takes PATCH (trickle ICE candidates,
// application/trickle-ice-sdpfrag) and DELETE (end the session).
//
// Adversary: anyone who can reach the HTTP port. A token (Config.Token)
// gates every request; sessions and per-session bitrate are bounded;
// malformed offers, unsupported codecs, a stream already published and
// excess sessions are refused with a 4xx and counted
// (sidecar_whip_refused_total{reason}), never affecting other sessions.
package whip

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moqsframe/moqsframe/rtpingest"
	"github.com/moqsframe/moqsframe/webrtc/internal/wish"
)

// Submitter takes the frames: *sidecar.Sidecar.
type Submitter interface {
	Submit(ctx context.Context, track string, group, subgroup, object uint64, payload []byte) error
}

// Config configures a Server.
type Config struct {
	Sink Submitter
	// OnTrack is called with a MoQ track name before its first object, so
	// the track can be announced to the relay. Optional.
	OnTrack func(track string)
	Token   string // bearer token required of every request; empty: none
	// MaxSessions bounds concurrent publishing sessions; default 4.
	MaxSessions int
	// MaxBitrate bounds each session's received media, in bits per second
	// (default 20 Mbit/s). It is announced in the answer (b=TIAS, so
	// encoders stay below it) and enforced: a session above it for 3
	// seconds in a row is closed and counted.
	MaxBitrate int
	// KeyframeInterval is how often a keyframe is requested (RTCP PLI) from
	// each video publisher, so that late subscribers start soon: browsers
	// send keyframes only when asked. Default 2 s.
	KeyframeInterval time.Duration
	// AudioGroupFrames is the number of Opus frames per MoQ group (default
	// 50: one second of 20 ms frames).
	AudioGroupFrames int
	// ICEIPs restricts ICE host candidates to these addresses (see
	// wish.ListenIPs); nil: every interface.
	ICEIPs []net.IP
	Logger *slog.Logger
}

// Server is the WHIP endpoint.
type Server struct {
	cfg Config
	ep  *wish.Endpoint
	api *webrtc.API
	log *slog.Logger

	metrics wish.Collector

	mu      sync.Mutex
	streams map[string]bool // published now

	packets, frames, dropped, bitrateClosed prometheus.Counter
}

// New returns a WHIP server; Register its handler on a mux.
func New(cfg Config) (*Server, error) {
	if cfg.Sink == nil {
		return nil, fmt.Errorf("whip: Config needs a Sink")
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 4
	}
	if cfg.MaxBitrate <= 0 {
		cfg.MaxBitrate = 20_000_000
	}
	if cfg.KeyframeInterval <= 0 {
		cfg.KeyframeInterval = 2 * time.Second
	}
	if cfg.AudioGroupFrames <= 0 {
		cfg.AudioGroupFrames = 50
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	api, err := wish.NewAPI(cfg.ICEIPs)
	if err != nil {
		return nil, err
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "sidecar_whip_" + name, Help: help})
	}
	s := &Server{cfg: cfg, api: api, log: cfg.Logger.With("endpoint", "whip"), streams: map[string]bool{},
		packets:       counter("rtp_packets_total", "RTP packets received from WHIP publishers."),
		frames:        counter("frames_total", "Frames depacketized from WHIP publishers and submitted."),
		dropped:       counter("frames_dropped_total", "Frames dropped: damaged by loss, malformed, before the first keyframe, or refused by the sidecar."),
		bitrateClosed: counter("bitrate_exceeded_total", "Sessions closed for exceeding the bitrate limit."),
	}
	s.metrics = wish.Collector{s.packets, s.frames, s.dropped, s.bitrateClosed}
	s.ep = wish.NewEndpoint(wish.Config{Name: "whip", Token: cfg.Token, MaxSessions: cfg.MaxSessions, Logger: cfg.Logger}, s)
	s.metrics = append(s.metrics, s.ep.Collectors()...)
	return s, nil
}

// Describe implements prometheus.Collector: the server's metrics are
// sidecar_whip_{rtp_packets_total, frames_total, frames_dropped_total, bitrate_exceeded_total, refused_total{reason}, sessions, sessions_total}.
func (s *Server) Describe(ch chan<- *prometheus.Desc) { s.metrics.Describe(ch) }

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) { s.metrics.Collect(ch) }

// Register adds the endpoint (/whip, /whip/NAME, /whip/session/ID) to mux.
func (s *Server) Register(mux *http.ServeMux) { s.ep.Register(mux) }

// Close ends every session.
func (s *Server) Close() { s.ep.Close() }

// Sessions returns the number of sessions open or negotiating.
func (s *Server) Sessions() int { return s.ep.Count() }

// Offer implements wish.Protocol.
func (s *Server) Offer(stream, offer string, done func()) (string, wish.Session, error) {
	if !wish.ValidStream(stream) {
		return "", nil, wish.Refuse(http.StatusNotFound, wish.ErrBadStream, "%q: stream names are 1 to 64 of A-Z a-z 0-9 . _ -", stream)
	}
	s.mu.Lock()
	if s.streams[stream] {
		s.mu.Unlock()
		return "", nil, wish.Refuse(http.StatusConflict, wish.ErrStreamBusy, "stream %q has a publisher; DELETE its session first or publish to /whip/OTHER", stream)
	}
	s.streams[stream] = true
	s.mu.Unlock()

	sess, answer, err := s.newSession(stream, offer, done)
	if err != nil {
		s.release(stream)
		return "", nil, err
	}
	return answer, sess, nil
}

func (s *Server) release(stream string) {
	s.mu.Lock()
	delete(s.streams, stream)
	s.mu.Unlock()
}

// trackName is the MoQ track of a media kind in stream.
func trackName(stream string, kind webrtc.RTPCodecType) string {
	if stream == "" {
		return kind.String()
	}
	return stream + "/" + kind.String()
}

type session struct {
	s      *Server
	stream string
	pc     *webrtc.PeerConnection
	ctx    context.Context
	cancel context.CancelFunc
	bytes  atomic.Uint64 // RTP payload bytes received

	mu    sync.Mutex
	kinds map[webrtc.RTPCodecType]bool // tracks taken

	closeOnce sync.Once
	done      func()
}

func (s *Server) newSession(stream, offer string, done func()) (*session, string, error) {
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", wish.Refuse(http.StatusInternalServerError, wish.ErrNegotiation, "%v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sess := &session{s: s, stream: stream, pc: pc, ctx: ctx, cancel: cancel, done: done, kinds: map[webrtc.RTPCodecType]bool{}}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { go sess.read(tr) })
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
			sess.Close()
		}
	})
	answer, err := wish.Negotiate(pc, offer)
	if err != nil {
		sess.Close()
		return nil, "", err
	}
	go sess.police()
	return sess, withBitrate(answer, s.cfg.MaxBitrate), nil
}

// withBitrate adds b=TIAS (RFC 3890, bits per second) to every media
// section of an answer, so the publisher's encoder stays below the limit.
func withBitrate(answer string, bps int) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(answer, "\n") {
		b.WriteString(l)
		if strings.HasPrefix(l, "c=") {
			fmt.Fprintf(&b, "b=TIAS:%d\r\n", bps)
		}
	}
	return b.String()
}

// AddCandidates implements wish.Session.
func (ss *session) AddCandidates(f *wish.SDPFrag) error { return wish.AddCandidates(ss.pc, f) }

// Close implements wish.Session.
func (ss *session) Close() error {
	var err error
	ss.closeOnce.Do(func() {
		ss.cancel()
		err = ss.pc.Close()
		ss.s.release(ss.stream)
		ss.done()
	})
	return err
}

// police closes the session when it exceeds the bitrate limit for 3
// seconds in a row.
func (ss *session) police() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last, lastAt, strikes := uint64(0), time.Now(), 0
	for {
		select {
		case <-ss.ctx.Done():
			return
		case now := <-t.C:
			n := ss.bytes.Load()
			rate := float64(n-last) * 8 / now.Sub(lastAt).Seconds()
			last, lastAt = n, now
			if rate <= float64(ss.s.cfg.MaxBitrate) {
				strikes = 0
				continue
			}
			if strikes++; strikes >= 3 {
				ss.s.bitrateClosed.Inc()
				ss.s.log.Warn("session closed: bitrate limit exceeded", "stream", ss.stream, "bps", int(rate), "limit", ss.s.cfg.MaxBitrate)
				ss.Close()
				return
			}
		}
	}
}

// codecs maps a track's negotiated MIME type to its rtpingest payload
// format: the same depacketizers as -rtp-video and -rtp-audio.
var codecs = map[string]rtpingest.Codec{
	strings.ToLower(webrtc.MimeTypeH264): rtpingest.H264,
	strings.ToLower(webrtc.MimeTypeVP8):  rtpingest.VP8,
	strings.ToLower(webrtc.MimeTypeVP9):  rtpingest.VP9,
	strings.ToLower(webrtc.MimeTypeOpus): rtpingest.Opus,
}

// read depacketizes one incoming track until the session ends: its RTP
// goes through an rtpingest.Receiver (RFC 3550 receive state, reordering,
// padding-only probes, RTCP; a new MoQ group at each keyframe, frames
// before the first keyframe dropped), each frame one object.
func (ss *session) read(tr *webrtc.TrackRemote) {
	kind := tr.Kind()
	ss.mu.Lock()
	taken := ss.kinds[kind]
	ss.kinds[kind] = true
	ss.mu.Unlock()
	if taken {
		ss.s.log.Warn("second track of the same kind ignored: one video and one audio track per stream", "stream", ss.stream, "kind", kind)
		return
	}
	mime := strings.ToLower(tr.Codec().MimeType)
	codec, ok := codecs[mime]
	if !ok {
		ss.s.log.Warn("track codec not supported", "codec", mime)
		return
	}
	rc, err := rtpingest.NewReceiver(rtpingest.Config{Codec: codec, AudioGroupFrames: ss.s.cfg.AudioGroupFrames})
	if err != nil {
		ss.s.log.Warn("track codec not supported", "codec", mime, "err", err)
		return
	}
	if kind == webrtc.RTPCodecTypeVideo {
		go ss.requestKeyframes(tr.SSRC())
	}
	name := trackName(ss.stream, kind)
	if ss.s.cfg.OnTrack != nil {
		ss.s.cfg.OnTrack(name)
	}
	ss.s.log.Info("receiving track", "track", name, "codec", tr.Codec().MimeType)
	buf := make([]byte, 1500)
	var dropped uint64
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		ss.s.packets.Inc()
		ss.bytes.Add(uint64(n))
		_ = rc.Push(buf[:n]) // counted by the receiver; no other data is lost
		if d := rc.Stats().Dropped; d > dropped {
			ss.s.dropped.Add(float64(d - dropped))
			dropped = d
		}
		for f, ok := rc.Next(); ok; f, ok = rc.Next() {
			if err := ss.s.cfg.Sink.Submit(ss.ctx, name, f.Group, 0, f.Object, f.Data); err != nil {
				ss.s.dropped.Inc()
				if ss.ctx.Err() != nil {
					return
				}
			} else {
				ss.s.frames.Inc()
			}
		}
	}
}

// requestKeyframes sends a PLI (RFC 4585 6.3.1) at once and every
// KeyframeInterval: the first starts the track, the rest let late
// subscribers in.
func (ss *session) requestKeyframes(ssrc webrtc.SSRC) {
	t := time.NewTicker(ss.s.cfg.KeyframeInterval)
	defer t.Stop()
	for {
		if err := ss.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}}); err != nil && ss.ctx.Err() != nil {
			return
		}
		select {
		case <-ss.ctx.Done():
			return
		case <-t.C:
		}
	}
}
