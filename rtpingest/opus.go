package rtpingest

import (
	"fmt"

	"github.com/pion/rtp"
)

// OpusDepacketizer turns RTP packets into Opus frames: each packet carries
// exactly one Opus packet (RFC 7587 §4.2), and each is decodable on its own.
type OpusDepacketizer struct {
	started bool
	seq     uint16
	c       counters
}

// Push returns the frame the packet carries. Its Data aliases p.Payload.
func (d *OpusDepacketizer) Push(p *rtp.Packet) (Frame, bool, error) {
	d.c.packets.Add(1)
	if d.started {
		gap := p.SequenceNumber - d.seq - 1
		if gap >= 0x8000 {
			return Frame{}, false, nil // late or duplicate
		}
		d.c.lost.Add(uint64(gap))
	}
	d.started, d.seq = true, p.SequenceNumber
	if len(p.Payload) == 0 {
		d.c.malformed.Add(1)
		d.c.dropped.Add(1)
		return Frame{}, false, fmt.Errorf("%w: empty Opus packet", ErrMalformed)
	}
	d.c.frames.Add(1)
	return Frame{Data: p.Payload, Timestamp: p.Timestamp, Keyframe: true}, true, nil
}

// Stats returns the depacketizer's counters; safe from any goroutine.
func (d *OpusDepacketizer) Stats() Stats { return d.c.stats() }
