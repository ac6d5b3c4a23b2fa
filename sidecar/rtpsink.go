package sidecar

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// RTPOutput sends one track as RTP to a UDP address.
type RTPOutput struct {
	Track       string
	Codec       Codec  // H264 (packetized per RFC 6184) or Opus (RFC 7587)
	Addr        string // host:port
	PayloadType uint8  // default 96 for H.264, 111 for Opus
}

// RTPSink is the decrypting sidecar's RTP output: each plaintext object
// (one frame) becomes RTP packets on its track's UDP destination, with a
// fresh random SSRC and sequence start per track and timestamps from the
// wall clock (MoQ objects carry none).
type RTPSink struct {
	mu     sync.Mutex
	tracks map[string]*rtpTrack
	mtu    uint16
}

type rtpTrack struct {
	conn    net.Conn
	codec   Codec
	pt      uint8
	clock   float64 // RTP clock rate, Hz
	ssrc    uint32
	seq     uint16
	start   time.Time
	h264    codecs.H264Payloader
	scratch []byte
}

// NewRTPSink opens the UDP destinations of outs.
func NewRTPSink(outs []RTPOutput) (*RTPSink, error) {
	s := &RTPSink{tracks: map[string]*rtpTrack{}, mtu: 1200}
	for _, o := range outs {
		conn, err := net.Dial("udp", o.Addr)
		if err != nil {
			s.Close()
			return nil, err
		}
		var r [6]byte
		rand.Read(r[:])
		t := &rtpTrack{conn: conn, codec: o.Codec, pt: o.payloadType(), ssrc: binary.BigEndian.Uint32(r[:4]),
			seq: binary.BigEndian.Uint16(r[4:]), start: time.Now()}
		switch o.Codec {
		case H264:
			t.clock = 90000
		case Opus:
			t.clock = 48000
		default:
			s.Close()
			return nil, fmt.Errorf("sidecar: RTP output for %s: unknown codec %q (want h264 or opus)", o.Track, o.Codec)
		}
		s.tracks[o.Track] = t
	}
	return s, nil
}

// WriteObject packetizes one frame and sends it.
func (s *RTPSink) WriteObject(track string, _, _, _ uint64, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tracks[track]
	if !ok {
		return fmt.Errorf("sidecar: no RTP output for track %q", track)
	}
	ts := uint32(time.Since(t.start).Seconds() * t.clock)
	payloads := [][]byte{payload}
	if t.codec == H264 {
		payloads = t.h264.Payload(s.mtu, payload)
	}
	for i, p := range payloads {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: t.pt, SequenceNumber: t.seq, Timestamp: ts,
			SSRC: t.ssrc, Marker: i == len(payloads)-1}, Payload: p}
		t.seq++
		n := pkt.MarshalSize()
		if cap(t.scratch) < n {
			t.scratch = make([]byte, n)
		}
		n, err := pkt.MarshalTo(t.scratch[:n])
		if err != nil {
			return err
		}
		if _, err := t.conn.Write(t.scratch[:n]); err != nil {
			return err
		}
	}
	return nil
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
