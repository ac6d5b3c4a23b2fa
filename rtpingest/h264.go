package rtpingest

import (
	"fmt"

	"github.com/pion/rtp"
)

// MaxFrameSize bounds an assembled frame, so a peer cannot make the
// depacketizer grow without limit.
const MaxFrameSize = 4 << 20

var annexBStartCode = []byte{0, 0, 0, 1}

// NAL unit types of RFC 6184 §5.2 and H.264 Table 7-1.
const (
	nalIDR   = 5
	nalSTAPA = 24
	nalFUA   = 28
)

// H264Depacketizer assembles H.264 access units from RTP packets of one SSRC.
// An access unit ends with the RTP marker bit (RFC 6184 §5.1); one whose
// marker packet never arrives is dropped when the next timestamp begins. Use
// one per stream, from one goroutine.
type H264Depacketizer struct {
	frame    []byte // Annex-B NAL units of the current access unit
	ts       uint32
	keyframe bool
	damaged  bool // a packet of this access unit was lost or bad
	inFU     bool // inside a fragmented NAL unit
	started  bool // ts and seq are valid
	seq      uint16
	out      []byte // returned frame; valid until the next Push
	c        counters
}

// Push adds one RTP packet. When it completes an access unit it returns the
// frame (valid until the next Push) and true. Frames damaged by loss or
// malformed input are dropped and counted; their error is returned with
// ok=false so callers may log it.
func (d *H264Depacketizer) Push(p *rtp.Packet) (f Frame, ok bool, err error) {
	d.c.packets.Add(1)
	gapped := false
	if d.started {
		gap := p.SequenceNumber - d.seq - 1
		if gap >= 0x8000 { // late or duplicate packet: ignore it
			return Frame{}, false, nil
		}
		if gap != 0 {
			d.c.lost.Add(uint64(gap))
			gapped = true
		}
		if p.Timestamp != d.ts {
			if len(d.frame) > 0 || d.inFU {
				// A new access unit began before the old one's
				// marker packet arrived: the old one is incomplete.
				d.c.dropped.Add(1)
				d.reset(p.Timestamp)
			}
			// The gap is charged to the previous access unit. Had it
			// cut this one's start, this packet would continue a
			// fragment, which parse rejects.
			gapped = false
		}
	}
	if len(d.frame) == 0 && !d.inFU {
		d.ts = p.Timestamp
	}
	d.damaged = d.damaged || gapped
	d.started = true
	d.seq = p.SequenceNumber

	if perr := d.parse(p.Payload); perr != nil {
		d.c.malformed.Add(1)
		d.damaged = true
		err = perr
	}
	if !p.Marker {
		return Frame{}, false, err
	}
	return d.finish()
}

func (d *H264Depacketizer) finish() (Frame, bool, error) {
	defer d.reset(d.ts)
	switch {
	case d.damaged:
		d.c.dropped.Add(1)
		return Frame{}, false, ErrLoss
	case len(d.frame) > MaxFrameSize:
		d.c.dropped.Add(1)
		return Frame{}, false, ErrTooLarge
	case len(d.frame) == 0:
		return Frame{}, false, nil
	}
	d.out = append(d.out[:0], d.frame...)
	d.c.frames.Add(1)
	return Frame{Data: d.out, Timestamp: d.ts, Keyframe: d.keyframe}, true, nil
}

func (d *H264Depacketizer) reset(ts uint32) {
	d.frame = d.frame[:0]
	d.keyframe, d.damaged, d.inFU = false, false, false
	d.ts = ts
}

func (d *H264Depacketizer) parse(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty payload", ErrMalformed)
	}
	if b[0]&0x80 != 0 {
		return fmt.Errorf("%w: forbidden_zero_bit set", ErrMalformed)
	}
	switch typ := b[0] & 0x1f; {
	case typ >= 1 && typ <= 23:
		if d.inFU {
			return fmt.Errorf("%w: NAL unit inside an unfinished fragment", ErrMalformed)
		}
		d.appendNAL(b)
	case typ == nalSTAPA:
		for rest := b[1:]; len(rest) > 0; {
			if len(rest) < 2 {
				return fmt.Errorf("%w: STAP-A size field truncated", ErrMalformed)
			}
			n := int(rest[0])<<8 | int(rest[1])
			if n == 0 || len(rest)-2 < n {
				return fmt.Errorf("%w: STAP-A unit of %d bytes, %d left", ErrMalformed, n, len(rest)-2)
			}
			d.appendNAL(rest[2 : 2+n])
			rest = rest[2+n:]
		}
	case typ == nalFUA:
		if len(b) < 3 {
			return fmt.Errorf("%w: FU-A of %d bytes", ErrMalformed, len(b))
		}
		start, end := b[1]&0x80 != 0, b[1]&0x40 != 0
		switch {
		case start && !d.inFU:
			header := b[0]&0xe0 | b[1]&0x1f
			d.appendNAL([]byte{header})
			d.inFU = true
		case !start && !d.inFU:
			return fmt.Errorf("%w: FU-A continuation without a start", ErrMalformed)
		case start && d.inFU:
			return fmt.Errorf("%w: FU-A start inside a fragment", ErrMalformed)
		}
		d.frame = append(d.frame, b[2:]...)
		if end {
			d.inFU = false
		}
	default:
		return fmt.Errorf("%w: unsupported NAL unit type %d", ErrMalformed, typ)
	}
	if len(d.frame) > MaxFrameSize {
		return ErrTooLarge
	}
	return nil
}

// appendNAL starts a NAL unit in Annex-B form; nal is at least its header.
func (d *H264Depacketizer) appendNAL(nal []byte) {
	if nal[0]&0x1f == nalIDR {
		d.keyframe = true
	}
	d.frame = append(d.frame, annexBStartCode...)
	d.frame = append(d.frame, nal...)
}

// Stats returns the depacketizer's counters; safe from any goroutine.
func (d *H264Depacketizer) Stats() Stats { return d.c.stats() }
