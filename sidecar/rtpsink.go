package sidecar

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/moqsframe/moqsframe/rtpegress"
)

// RTPOutput sends one track as RTP to a UDP address.
type RTPOutput struct {
	Track       string
	Codec       Codec  // H264, H265, VP8, VP9 or Opus
	Addr        string // host:port
	PayloadType uint8  // default 96 for video, 111 for Opus
}

// RTPSink is the decrypting sidecar's RTP output: each plaintext object
// (one frame) becomes RTP packets on its track's UDP destination
// (package rtpegress: every NAL unit of an access unit reaches the wire, in
// order), with a fresh random SSRC and sequence start per track and
// timestamps from the wall clock (MoQ objects carry none).
type RTPSink struct {
	mu     sync.Mutex
	tracks map[string]*rtpTrack
}

type rtpTrack struct {
	conn  net.Conn
	clock float64 // RTP clock rate, Hz
	start time.Time
	pk    *rtpegress.Packetizer
}

// NewRTPSink opens the UDP destinations of outs.
func NewRTPSink(outs []RTPOutput) (*RTPSink, error) {
	s := &RTPSink{tracks: map[string]*rtpTrack{}}
	for _, o := range outs {
		pk, err := rtpegress.NewPacketizer(rtpegress.Config{Codec: rtpegress.Codec(o.Codec), PayloadType: o.payloadType()})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("sidecar: RTP output for %s: %w", o.Track, err)
		}
		conn, err := net.Dial("udp", o.Addr)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.tracks[o.Track] = &rtpTrack{conn: conn, clock: o.Codec.clockRate(), start: time.Now(), pk: pk}
	}
	return s, nil
}

// WriteObject packetizes one frame and sends it. A frame that cannot be
// packetized is refused whole (rtpegress.ErrMalformed, ErrTooLarge).
func (s *RTPSink) WriteObject(track string, _, _, _ uint64, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tracks[track]
	if !ok {
		return fmt.Errorf("sidecar: no RTP output for track %q", track)
	}
	ts := uint32(time.Since(t.start).Seconds() * t.clock)
	_, err := t.pk.WriteFrame(t.conn, ts, payload)
	return err
}

// Stats returns each track's packetizer counters.
func (s *RTPSink) Stats() map[string]rtpegress.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]rtpegress.Stats, len(s.tracks))
	for name, t := range s.tracks {
		out[name] = t.pk.Stats()
	}
	return out
}

// Close closes the UDP sockets.
func (s *RTPSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tracks {
		t.conn.Close()
	}
	return nil
}
