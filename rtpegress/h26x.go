package rtpegress

import (
	"encoding/binary"
	"fmt"
	"io"
)

// h26x describes what differs between RFC 6184 and RFC 7798 packetization.
type h26x struct {
	hdr    int                             // NAL unit header bytes: 1 or 2
	check  func(nal []byte) error          // refuses types reserved for RTP
	agg    func(dst []byte, nals [][]byte) // writes the aggregation packet header
	fu     func(dst, nal []byte, start, end bool)
	fuHead int // FU header bytes before the fragment: 2 (FU-A) or 3 (H.265 FU)
}

var h264Format = h26x{
	hdr: 1, fuHead: 2,
	check: func(nal []byte) error {
		if t := nal[0] & 0x1f; t == 0 || t > 23 {
			return fmt.Errorf("%w: H.264 NAL unit type %d cannot be sent in packetization-mode 1", ErrMalformed, t)
		}
		return nil
	},
	agg: func(dst []byte, nals [][]byte) {
		// STAP-A: F is the OR, NRI the maximum of the units' (RFC 6184 §5.7.1).
		var f, nri byte
		for _, n := range nals {
			f |= n[0] & 0x80
			nri = max(nri, n[0]&0x60)
		}
		dst[0] = f | nri | 24
	},
	fu: func(dst, nal []byte, start, end bool) {
		dst[0] = nal[0]&0xe0 | 28
		dst[1] = nal[0] & 0x1f
		if start {
			dst[1] |= 0x80
		}
		if end {
			dst[1] |= 0x40
		}
	},
}

var h265Format = h26x{
	hdr: 2, fuHead: 3,
	check: func(nal []byte) error {
		if t := nal[0] >> 1 & 0x3f; t >= 48 {
			return fmt.Errorf("%w: H.265 NAL unit type %d is reserved for RTP (RFC 7798 §4.4)", ErrMalformed, t)
		}
		return nil
	},
	agg: func(dst []byte, nals [][]byte) {
		// AP: F is the OR, LayerId and TID the lowest of the units' (RFC 7798 §4.4.2).
		var f byte
		layer, tid := byte(63), byte(7)
		for _, n := range nals {
			f |= n[0] & 0x80
			layer = min(layer, n[0]&1<<5|n[1]>>3)
			tid = min(tid, n[1]&7)
		}
		dst[0] = f | 48<<1 | layer>>5
		dst[1] = layer<<3 | tid
	},
	fu: func(dst, nal []byte, start, end bool) {
		dst[0] = nal[0]&0x81 | 49<<1
		dst[1] = nal[1]
		dst[2] = nal[0] >> 1 & 0x3f
		if start {
			dst[2] |= 0x80
		}
		if end {
			dst[2] |= 0x40
		}
	},
}

func (p *Packetizer) writeH264(w io.Writer, ts uint32, frame []byte) (int, error) {
	return p.writeH26x(w, ts, frame, &h264Format)
}

func (p *Packetizer) writeH265(w io.Writer, ts uint32, frame []byte) (int, error) {
	return p.writeH26x(w, ts, frame, &h265Format)
}

// writeH26x sends every NAL unit of the frame in order: runs of units that
// fit one packet together in an aggregation packet (STAP-A, AP), a unit
// alone in a single NAL unit packet, a unit larger than a packet in
// fragmentation units (FU-A, FU).
func (p *Packetizer) writeH26x(w io.Writer, ts uint32, frame []byte, f *h26x) (int, error) {
	if err := p.splitAnnexB(frame); err != nil {
		return 0, err
	}
	for _, nal := range p.nals {
		if len(nal) <= f.hdr {
			return 0, fmt.Errorf("%w: NAL unit of %d bytes", ErrMalformed, len(nal))
		}
		if nal[0]&0x80 != 0 {
			return 0, fmt.Errorf("%w: forbidden_zero_bit set", ErrMalformed)
		}
		if err := f.check(nal); err != nil {
			return 0, err
		}
	}
	maxp := p.maxPayload()
	sent := 0
	for i := 0; i < len(p.nals); {
		nal := p.nals[i]
		// The longest run from i that fits one aggregation packet.
		j, size := i, f.hdr
		for j < len(p.nals) && size+2+len(p.nals[j]) <= maxp {
			size += 2 + len(p.nals[j])
			j++
		}
		last := func(k int) bool { return k == len(p.nals) }
		switch {
		case j-i >= 2:
			pl := p.header(ts, last(j))
			f.agg(pl, p.nals[i:j])
			n := f.hdr
			for _, u := range p.nals[i:j] {
				binary.BigEndian.PutUint16(pl[n:], uint16(len(u)))
				n += 2 + copy(pl[n+2:], u)
			}
			if err := p.send(w, n); err != nil {
				return sent, err
			}
			sent++
			i = j
		case len(nal) <= maxp:
			n := copy(p.header(ts, last(i+1)), nal)
			if err := p.send(w, n); err != nil {
				return sent, err
			}
			sent++
			i++
		default:
			data := nal[f.hdr:]
			chunk := maxp - f.fuHead
			for off := 0; off < len(data); off += chunk {
				end := off+chunk >= len(data)
				pl := p.header(ts, end && last(i+1))
				f.fu(pl, nal, off == 0, end)
				n := f.fuHead + copy(pl[f.fuHead:], data[off:min(off+chunk, len(data))])
				if err := p.send(w, n); err != nil {
					return sent, err
				}
				sent++
			}
			i++
		}
	}
	return sent, nil
}
