package rtpingest

import (
	"encoding/binary"
	"fmt"
)

// packet is an RTP packet's fields the receiver uses. payload excludes
// CSRCs, header extensions and padding (RFC 3550 §5.1, §5.3.1).
type packet struct {
	seq     uint16
	ts      uint32
	ssrc    uint32
	pt      uint8
	marker  bool
	payload []byte
}

// isRTCP reports whether a datagram on a multiplexed RTP port is RTCP: its
// second byte (RTCP packet type) is 192–223 (RFC 5761 §4). RTP payload
// types 64–95 with the marker bit fall in that range, which is why RFC 5761
// forbids them for multiplexed sessions.
func isRTCP(b []byte) bool { return len(b) >= 2 && b[1] >= 192 && b[1] <= 223 }

// parseRTP parses an RTP fixed header, CSRC list, header extension and
// padding (RFC 3550 §5.1, §5.3.1). It does not allocate: payload aliases b.
func parseRTP(b []byte, p *packet) error {
	if len(b) < 12 {
		return fmt.Errorf("%w: %d-byte packet, shorter than the RTP header", ErrMalformed, len(b))
	}
	if v := b[0] >> 6; v != 2 {
		return fmt.Errorf("%w: RTP version %d", ErrMalformed, v)
	}
	end := len(b)
	if b[0]&0x20 != 0 { // padding: the last octet counts the padding, itself included
		n := int(b[end-1])
		if n == 0 || n > end-12 {
			return fmt.Errorf("%w: padding of %d bytes in a %d-byte packet", ErrMalformed, n, end)
		}
		end -= n
	}
	off := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 { // header extension: 16-bit profile, 16-bit length in words
		if off+4 > end {
			return fmt.Errorf("%w: header extension past the payload", ErrMalformed)
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
	}
	if off > end {
		return fmt.Errorf("%w: header of %d bytes, packet of %d without padding", ErrMalformed, off, end)
	}
	p.marker = b[1]&0x80 != 0
	p.pt = b[1] & 0x7f
	p.seq = binary.BigEndian.Uint16(b[2:])
	p.ts = binary.BigEndian.Uint32(b[4:])
	p.ssrc = binary.BigEndian.Uint32(b[8:])
	p.payload = b[off:end]
	return nil
}

// RTCP packet types (RFC 3550 §12.1).
const (
	rtcpSR  = 200
	rtcpRR  = 201
	rtcpBYE = 203
)

// rtcpInfo is what the receiver takes from a compound RTCP packet.
type rtcpInfo struct {
	sr, rr, bye int
	byeSSRCs    [31]uint32 // RFC 3550 §6.6: SC is 5 bits
	nBye        int
}

// parseRTCP walks a compound RTCP packet (RFC 3550 §6.1): each part has
// version 2 and a length in 32-bit words minus one, and the parts fill the
// datagram exactly. SR, RR and BYE are counted; BYE's SSRCs are returned.
func parseRTCP(b []byte, info *rtcpInfo) error {
	*info = rtcpInfo{}
	if len(b) < 4 {
		return fmt.Errorf("%w: %d-byte RTCP packet", ErrMalformed, len(b))
	}
	for len(b) > 0 {
		if len(b) < 4 || b[0]>>6 != 2 {
			return fmt.Errorf("%w: RTCP part without a version 2 header", ErrMalformed)
		}
		n := 4 * (int(binary.BigEndian.Uint16(b[2:])) + 1)
		if n > len(b) {
			return fmt.Errorf("%w: RTCP part of %d bytes, %d left", ErrMalformed, n, len(b))
		}
		part := b[:n]
		switch part[1] {
		case rtcpSR:
			info.sr++
		case rtcpRR:
			info.rr++
		case rtcpBYE:
			info.bye++
			sc := int(part[0] & 0x1f)
			if 4+4*sc > n {
				return fmt.Errorf("%w: BYE lists %d sources in %d bytes", ErrMalformed, sc, n)
			}
			for i := 0; i < sc && info.nBye < len(info.byeSSRCs); i++ {
				info.byeSSRCs[info.nBye] = binary.BigEndian.Uint32(part[4+4*i:])
				info.nBye++
			}
		}
		b = b[n:]
	}
	return nil
}
