package rtpegress

import (
	"fmt"
	"io"
)

// writeVP8 sends a VP8 frame (RFC 7741 §4.2) with a 4-byte payload
// descriptor: X=1, S=1 on the first packet, partition index 0, and a
// 15-bit picture ID that counts frames, so receivers can tell lost frames.
func (p *Packetizer) writeVP8(w io.Writer, ts uint32, frame []byte) (int, error) {
	if len(frame) == 0 {
		return 0, fmt.Errorf("%w: empty VP8 frame", ErrMalformed)
	}
	return p.writeVPx(w, ts, frame, 4, func(d []byte, first, _ bool) {
		d[0] = 0x80 // X
		if first {
			d[0] |= 0x10 // S, PID 0
		}
		d[1] = 0x80 // I
		d[2] = 0x80 | byte(p.picID>>8)
		d[3] = byte(p.picID)
	})
}

// writeVP9 sends a VP9 frame, superframes included (RFC 9628 §4.2), with a
// 3-byte non-flexible descriptor: I=1 with a 15-bit picture ID, P=0 on key
// frames, B on the first packet, E on the last.
func (p *Packetizer) writeVP9(w io.Writer, ts uint32, frame []byte) (int, error) {
	if len(frame) == 0 {
		return 0, fmt.Errorf("%w: empty VP9 frame", ErrMalformed)
	}
	inter := !vp9Key(frame)
	return p.writeVPx(w, ts, frame, 3, func(d []byte, first, last bool) {
		d[0] = 0x80 // I
		if inter {
			d[0] |= 0x40 // P
		}
		if first {
			d[0] |= 0x08 // B
		}
		if last {
			d[0] |= 0x04 // E
		}
		d[1] = 0x80 | byte(p.picID>>8)
		d[2] = byte(p.picID)
	})
}

func (p *Packetizer) writeVPx(w io.Writer, ts uint32, frame []byte, dlen int, desc func(d []byte, first, last bool)) (int, error) {
	chunk := p.maxPayload() - dlen
	sent := 0
	for off := 0; off < len(frame); off += chunk {
		last := off+chunk >= len(frame)
		pl := p.header(ts, last)
		desc(pl, off == 0, last)
		n := dlen + copy(pl[dlen:], frame[off:min(off+chunk, len(frame))])
		if err := p.send(w, n); err != nil {
			return sent, err
		}
		sent++
	}
	p.picID = (p.picID + 1) & 0x7fff
	return sent, nil
}

// vp9Key reads frame_type from the uncompressed header (VP9 bitstream
// §6.2): frame_marker 2, profile bits, reserved bit in profile 3,
// show_existing_frame, frame_type (0: key frame).
func vp9Key(b []byte) bool {
	if b[0]>>6 != 2 {
		return false
	}
	bit := 4
	if b[0]>>4&3 == 3 {
		bit++
	}
	return b[0]<<bit&0x80 == 0 && b[0]<<(bit+1)&0x80 == 0
}
