// Package rtpegress packetizes media frames, one MoQ object each, into RTP
// (RFC 3550): H.264 (RFC 6184, packetization-mode 1), H.265 (RFC 7798),
// VP8 (RFC 7741), VP9 (RFC 9628) and Opus (RFC 7587). It is the inverse of
// package rtpingest: every NAL unit of an H.264 or H.265 access unit
// reaches the wire, in order, whatever their number or kind.
//
// Adversary: frames come from decrypted MoQ objects, so from a member of
// the security group. A frame that cannot be packetized (no Annex-B start
// code, a NAL unit type reserved for RTP) is refused whole with an error
// wrapping ErrMalformed and counted; nothing of it is sent.
package rtpegress

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// Codec names an RTP payload format; the values are those of rtpingest.
type Codec string

// Payload formats.
const (
	H264 Codec = "h264"
	H265 Codec = "h265"
	VP8  Codec = "vp8"
	VP9  Codec = "vp9"
	Opus Codec = "opus"
)

// Errors; test with errors.Is.
var (
	ErrMalformed = errors.New("rtpegress: frame cannot be packetized")
	ErrTooLarge  = errors.New("rtpegress: frame does not fit in RTP packets of the MTU")
)

// Config configures a Packetizer.
type Config struct {
	Codec Codec
	// PayloadType is the RTP payload type; default 96 (video), 111 (Opus).
	PayloadType uint8
	// SSRC and Sequence, the first sequence number: both random when
	// both are zero (RFC 3550 §5.1 wants random starts), else as given.
	SSRC     uint32
	Sequence uint16
	// MTU bounds a packet, RTP header included, in bytes: 64 to 65507,
	// default 1200 (below common path MTUs after IP, UDP and tunnels).
	MTU int
}

// Stats counts a packetizer's output.
type Stats struct {
	Frames  uint64 // frames sent whole
	Packets uint64 // RTP packets written
	Bytes   uint64 // RTP bytes written, headers included
	Refused uint64 // frames refused: malformed or too large for the MTU
	Errors  uint64 // frames cut short by a write error
}

// Packetizer turns the frames of one track into RTP packets of one SSRC.
// Use it from one goroutine; Stats may be called from any.
type Packetizer struct {
	cfg                                   Config
	seq                                   uint16
	picID                                 uint16 // VP8/VP9 picture ID, 15 bits
	nals                                  [][]byte
	buf                                   []byte
	frames, packets, bytes, refused, errs atomic.Uint64
}

const rtpHeader = 12

// NewPacketizer returns a packetizer for cfg.
func NewPacketizer(cfg Config) (*Packetizer, error) {
	switch cfg.Codec {
	case H264, H265, VP8, VP9:
		if cfg.PayloadType == 0 {
			cfg.PayloadType = 96
		}
	case Opus:
		if cfg.PayloadType == 0 {
			cfg.PayloadType = 111
		}
	default:
		return nil, fmt.Errorf("rtpegress: unknown codec %q (want h264, h265, vp8, vp9 or opus)", cfg.Codec)
	}
	if cfg.PayloadType > 127 {
		return nil, fmt.Errorf("rtpegress: payload type %d, want 0 to 127", cfg.PayloadType)
	}
	switch {
	case cfg.MTU == 0:
		cfg.MTU = 1200
	case cfg.MTU < 64 || cfg.MTU > 65507:
		return nil, fmt.Errorf("rtpegress: MTU of %d bytes, want 64 to 65507", cfg.MTU)
	}
	p := &Packetizer{cfg: cfg, seq: cfg.Sequence, buf: make([]byte, cfg.MTU)}
	if cfg.SSRC == 0 && cfg.Sequence == 0 {
		var r [8]byte
		rand.Read(r[:])
		p.cfg.SSRC = binary.BigEndian.Uint32(r[:])
		p.seq = binary.BigEndian.Uint16(r[4:])
		p.picID = binary.BigEndian.Uint16(r[6:]) & 0x7fff
	}
	return p, nil
}

// SSRC returns the packets' SSRC.
func (p *Packetizer) SSRC() uint32 { return p.cfg.SSRC }

// Stats returns the counters; safe from any goroutine.
func (p *Packetizer) Stats() Stats {
	return Stats{Frames: p.frames.Load(), Packets: p.packets.Load(), Bytes: p.bytes.Load(),
		Refused: p.refused.Load(), Errors: p.errs.Load()}
}

// WriteFrame packetizes one frame with RTP timestamp ts and writes each
// packet with one w.Write call (one datagram on a UDP net.Conn), the last
// with the marker bit. The frame is checked whole before anything is
// written: a frame refused with ErrMalformed or ErrTooLarge sends nothing.
// A write error stops the frame and is returned. Frame shapes:
// H.264 and H.265, Annex-B NAL units (3- or 4-byte start codes); VP8, VP9
// and Opus, one encoded frame or packet.
func (p *Packetizer) WriteFrame(w io.Writer, ts uint32, frame []byte) (packets int, err error) {
	var send func(*Packetizer, io.Writer, uint32, []byte) (int, error)
	switch p.cfg.Codec {
	case H264:
		send = (*Packetizer).writeH264
	case H265:
		send = (*Packetizer).writeH265
	case VP8:
		send = (*Packetizer).writeVP8
	case VP9:
		send = (*Packetizer).writeVP9
	default:
		send = (*Packetizer).writeOpus
	}
	n, err := send(p, w, ts, frame)
	switch {
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrTooLarge):
		p.refused.Add(1)
	case err != nil:
		p.errs.Add(1)
	default:
		p.frames.Add(1)
	}
	return n, err
}

// header writes the RTP fixed header into p.buf and returns the payload
// space after it.
func (p *Packetizer) header(ts uint32, marker bool) []byte {
	b := p.buf
	b[0] = 0x80
	b[1] = p.cfg.PayloadType
	if marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], p.seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], p.cfg.SSRC)
	return b[rtpHeader:]
}

// send writes the packet of payload length n built in p.buf.
func (p *Packetizer) send(w io.Writer, n int) error {
	if _, err := w.Write(p.buf[:rtpHeader+n]); err != nil {
		return err
	}
	p.seq++
	p.packets.Add(1)
	p.bytes.Add(uint64(rtpHeader + n))
	return nil
}

func (p *Packetizer) maxPayload() int { return p.cfg.MTU - rtpHeader }

func (p *Packetizer) writeOpus(w io.Writer, ts uint32, frame []byte) (int, error) {
	switch {
	case len(frame) == 0:
		return 0, fmt.Errorf("%w: empty Opus packet", ErrMalformed)
	case len(frame) > p.maxPayload():
		return 0, fmt.Errorf("%w: Opus packet of %d bytes, MTU %d", ErrTooLarge, len(frame), p.cfg.MTU)
	}
	// RFC 7587 §4.1: the marker is for the first packet after silence,
	// which a relayed stream cannot tell; it stays clear.
	n := copy(p.header(ts, false), frame)
	if err := p.send(w, n); err != nil {
		return 0, err
	}
	return 1, nil
}

// splitAnnexB sets p.nals to the NAL units of an Annex-B stream, without
// their start codes and trailing zero bytes (H.264 §B.1).
func (p *Packetizer) splitAnnexB(b []byte) error {
	p.nals = p.nals[:0]
	start := -1
	for i := 0; i+2 < len(b); {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start < 0 && i > 0 && !allZero(b[:i]) {
				return fmt.Errorf("%w: %d bytes before the first start code", ErrMalformed, i)
			}
			p.addNAL(b, start, i)
			i += 3
			start = i
			continue
		}
		i++
	}
	if start < 0 {
		return fmt.Errorf("%w: no Annex-B start code in %d bytes", ErrMalformed, len(b))
	}
	p.addNAL(b, start, len(b))
	if len(p.nals) == 0 {
		return fmt.Errorf("%w: no NAL unit in the frame", ErrMalformed)
	}
	return nil
}

func (p *Packetizer) addNAL(b []byte, start, end int) {
	if start < 0 {
		return
	}
	for end > start && b[end-1] == 0 {
		end--
	}
	if end > start {
		p.nals = append(p.nals, b[start:end])
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
