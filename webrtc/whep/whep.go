// Package whep is a WHEP endpoint (draft-ietf-wish-whep) for the
// decrypting sidecar: a viewer (a browser, the player page) POSTs an SDP
// offer and receives the decrypted tracks over WebRTC. The Server is a
// sidecar.Sink: each plaintext MoQ object (one frame) is packetized to
// every viewer's track. A viewer starts a video track at the next MoQ group
// start (a keyframe, by the sidecar's grouping); until then its frames are
// skipped and counted.
//
// URLs: POST /whep (or /whep/NAME for the tracks "NAME/video" and
// "NAME/audio"); the 201 answer's Location (/whep/session/ID) takes PATCH
// (trickle ICE) and DELETE.
//
// Adversary: anyone who can reach the HTTP port. A token (Config.Token)
// gates every request; viewers are bounded; bad requests get a 4xx and are
// counted (sidecar_whep_refused_total{reason}).
package whep

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moqsframe/moqsframe/webrtc/internal/wish"
)

// Codec names the payload format of a track's objects.
type Codec string

const (
	H264 Codec = "h264" // Annex-B access units
	VP8  Codec = "vp8"  // one frame (RFC 7741)
	VP9  Codec = "vp9"  // one frame (RFC 9628)
	Opus Codec = "opus" // one Opus packet
)

// Track is one MoQ track offered to viewers.
type Track struct {
	Name  string // MoQ track name, e.g. "video"
	Codec Codec
}

// Config configures a Server.
type Config struct {
	// Tracks are sent to every viewer of the default stream (POST /whep).
	Tracks     []Track
	Token      string // bearer token; empty: none
	MaxViewers int    // concurrent viewers; default 16
	ICEIPs     []net.IP
	Logger     *slog.Logger
}

// Server is the WHEP endpoint and the sink of the decrypted objects.
type Server struct {
	cfg Config
	ep  *wish.Endpoint
	api *webrtc.API
	log *slog.Logger

	metrics wish.Collector

	mu      sync.Mutex
	tracks  map[string]*trackState
	viewers map[*viewer]struct{}

	sent, waiting, writeErrors prometheus.Counter
}

type trackState struct {
	Track
	last time.Time // arrival of the previous object (video frame timing)
}

// New returns a WHEP server; Register its handler on a mux.
func New(cfg Config) (*Server, error) {
	if cfg.MaxViewers <= 0 {
		cfg.MaxViewers = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	api, err := wish.NewAPI(cfg.ICEIPs)
	if err != nil {
		return nil, err
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "sidecar_whep_" + name, Help: help})
	}
	s := &Server{cfg: cfg, api: api, log: cfg.Logger.With("endpoint", "whep"), tracks: map[string]*trackState{}, viewers: map[*viewer]struct{}{},
		sent:        counter("frames_sent_total", "Frames sent to WHEP viewers (one per viewer)."),
		waiting:     counter("frames_skipped_total", "Frames not sent to a viewer that is connecting or waits for the next keyframe (group start)."),
		writeErrors: counter("write_errors_total", "Frames a viewer's track refused (closed or malformed)."),
	}
	for _, t := range cfg.Tracks {
		if _, err := capability(t.Codec); err != nil {
			return nil, err
		}
		s.tracks[t.Name] = &trackState{Track: t}
	}
	s.metrics = wish.Collector{s.sent, s.waiting, s.writeErrors}
	s.ep = wish.NewEndpoint(wish.Config{Name: "whep", Token: cfg.Token, MaxSessions: cfg.MaxViewers, Logger: cfg.Logger}, s)
	s.metrics = append(s.metrics, s.ep.Collectors()...)
	return s, nil
}

func capability(c Codec) (webrtc.RTPCodecCapability, error) {
	switch c {
	case H264:
		return wish.H264.RTPCodecCapability, nil
	case VP8:
		return wish.VP8.RTPCodecCapability, nil
	case VP9:
		return wish.VP9.RTPCodecCapability, nil
	case Opus:
		return wish.Opus.RTPCodecCapability, nil
	}
	return webrtc.RTPCodecCapability{}, fmt.Errorf("whep: codec %q not supported (h264, vp8, vp9, opus)", c)
}

// Describe implements prometheus.Collector: the server's metrics are
// sidecar_whep_{frames_sent_total, frames_skipped_total, write_errors_total, refused_total{reason}, sessions, sessions_total}.
func (s *Server) Describe(ch chan<- *prometheus.Desc) { s.metrics.Describe(ch) }

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) { s.metrics.Collect(ch) }

// Register adds the endpoint (/whep, /whep/session/ID) to mux.
func (s *Server) Register(mux *http.ServeMux) { s.ep.Register(mux) }

// Close ends every viewer's session.
func (s *Server) Close() { s.ep.Close() }

// connectedViewers returns the number of viewers media can reach now.
func (s *Server) connectedViewers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for v := range s.viewers {
		if v.connected.Load() {
			n++
		}
	}
	return n
}

// Viewers returns the number of viewers connected or negotiating.
func (s *Server) Viewers() int { return s.ep.Count() }

// WriteObject implements sidecar.Sink: one frame of track to every viewer.
// Objects of tracks that no viewer takes are ignored.
func (s *Server) WriteObject(track string, group, subgroup, object uint64, payload []byte) error {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ts, ok := s.tracks[track]
	if !ok {
		return nil
	}
	var d time.Duration
	if ts.Codec == Opus {
		var err error
		if d, err = opusDuration(payload); err != nil {
			s.writeErrors.Inc()
			return err
		}
	} else {
		// MoQ objects carry no timestamps: frame timing is arrival timing,
		// bounded so that a pause does not become a jump.
		d = min(max(now.Sub(ts.last), time.Millisecond), time.Second)
		if ts.last.IsZero() {
			d = 33 * time.Millisecond
		}
		ts.last = now
	}
	start := object == 0 // a group starts with a keyframe
	var first error
	for v := range s.viewers {
		vt := v.tracks[track]
		if vt == nil {
			continue
		}
		if !v.connected.Load() { // media written before DTLS-SRTP is up is dropped by pion
			s.waiting.Inc()
			continue
		}
		if !vt.started {
			if !start && ts.Codec != Opus {
				s.waiting.Inc()
				continue
			}
			vt.started = true
		}
		if err := vt.local.WriteSample(media.Sample{Data: payload, Duration: d}); err != nil {
			s.writeErrors.Inc()
			if first == nil {
				first = err
			}
			continue
		}
		s.sent.Inc()
	}
	return first
}

type viewer struct {
	s         *Server
	pc        *webrtc.PeerConnection
	connected atomic.Bool             // DTLS-SRTP is up: media can flow
	tracks    map[string]*viewerTrack // guarded by Server.mu
	closeOnce sync.Once
	done      func()
}

type viewerTrack struct {
	local   *webrtc.TrackLocalStaticSample
	started bool // a keyframe was sent
}

// Offer implements wish.Protocol.
func (s *Server) Offer(stream, offer string, done func()) (string, wish.Session, error) {
	if stream != "" {
		if !wish.ValidStream(stream) {
			return "", nil, wish.Refuse(http.StatusNotFound, wish.ErrBadStream, "%q: stream names are 1 to 64 of A-Z a-z 0-9 . _ -", stream)
		}
	}
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", nil, wish.Refuse(http.StatusInternalServerError, wish.ErrNegotiation, "%v", err)
	}
	v := &viewer{s: s, pc: pc, tracks: map[string]*viewerTrack{}, done: done}
	names := s.streamTracks(stream)
	if len(names) == 0 {
		pc.Close()
		return "", nil, wish.Refuse(http.StatusNotFound, wish.ErrBadStream, "stream %q has no tracks here", stream)
	}
	for _, t := range names {
		c, _ := capability(t.Codec)
		local, err := webrtc.NewTrackLocalStaticSample(c, strings.ReplaceAll(t.Name, "/", "-"), "moqsframe")
		if err != nil {
			pc.Close()
			return "", nil, wish.Refuse(http.StatusInternalServerError, wish.ErrNegotiation, "%v", err)
		}
		sender, err := pc.AddTrack(local)
		if err != nil {
			pc.Close()
			return "", nil, wish.Refuse(http.StatusInternalServerError, wish.ErrNegotiation, "%v", err)
		}
		go drainRTCP(sender) // NACKs and receiver reports feed the interceptors
		v.tracks[t.Name] = &viewerTrack{local: local}
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			v.connected.Store(true)
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			v.Close()
		}
	})
	answer, err := wish.Negotiate(pc, offer)
	if err != nil {
		pc.Close()
		return "", nil, err
	}
	s.mu.Lock()
	s.viewers[v] = struct{}{}
	s.mu.Unlock()
	return answer, v, nil
}

// streamTracks are the tracks of a stream: the configured ones for "",
// NAME/video (H.264) and NAME/audio (Opus) for NAME when configured.
func (s *Server) streamTracks(stream string) []Track {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Track
	for _, t := range s.cfg.Tracks {
		if stream == "" && !strings.Contains(t.Name, "/") || stream != "" && strings.HasPrefix(t.Name, stream+"/") {
			out = append(out, t)
		}
	}
	return out
}

func drainRTCP(s *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := s.Read(buf); err != nil {
			return
		}
	}
}

// AddCandidates implements wish.Session.
func (v *viewer) AddCandidates(f *wish.SDPFrag) error { return wish.AddCandidates(v.pc, f) }

// Close implements wish.Session.
func (v *viewer) Close() error {
	var err error
	v.closeOnce.Do(func() {
		v.s.mu.Lock()
		delete(v.s.viewers, v)
		v.s.mu.Unlock()
		err = v.pc.Close()
		v.done()
	})
	return err
}
