package rtpingest

import (
	"sync/atomic"

	"github.com/pion/rtp"
)

// H264Depacketizer is a Receiver for H.264 fed with parsed packets, for
// callers that read RTP themselves. Push returns at most one frame per
// packet; when a packet completes several (a reordered packet filling a
// gap, a marker-less frame ended by a one-packet marked frame), the others
// come with the next Pushes, one each, so from then on frames come one
// packet late. The first source is adopted at its first packet (no RFC
// 3550 probation), so that this does not happen from the start.
//
// Deprecated: use Receiver, which also recognises RTCP on the port and
// returns every frame as soon as it completes.
type H264Depacketizer struct{ l legacy }

// Push adds one RTP packet and returns a completed frame, valid until the
// next Push. Packet errors (ErrMalformed) are returned with ok=false or
// with a frame completed by earlier packets.
func (d *H264Depacketizer) Push(p *rtp.Packet) (f Frame, ok bool, err error) {
	return d.l.push(H264, p)
}

// Stats returns the counters; safe from any goroutine.
func (d *H264Depacketizer) Stats() Stats { return d.l.stats() }

// OpusDepacketizer is a Receiver for Opus fed with parsed packets.
//
// Deprecated: use Receiver.
type OpusDepacketizer struct{ l legacy }

// Push adds one RTP packet and returns a completed frame, valid until the
// next Push.
func (d *OpusDepacketizer) Push(p *rtp.Packet) (Frame, bool, error) { return d.l.push(Opus, p) }

// Stats returns the counters; safe from any goroutine.
func (d *OpusDepacketizer) Stats() Stats { return d.l.stats() }

type legacy struct {
	rp  atomic.Pointer[Receiver] // set by the first Push; Stats may run concurrently
	r   *Receiver
	buf []byte
}

func (l *legacy) push(c Codec, p *rtp.Packet) (Frame, bool, error) {
	if l.r == nil {
		l.r, _ = NewReceiver(Config{Codec: c})
		l.r.noProbation = true
		l.rp.Store(l.r)
	}
	n := p.MarshalSize()
	if cap(l.buf) < n {
		l.buf = make([]byte, n)
	}
	n, err := p.MarshalTo(l.buf[:n])
	if err != nil {
		l.r.c.packets.Add(1)
		l.r.c.malformed.Add(1)
		return Frame{}, false, err
	}
	err = l.r.Push(l.buf[:n])
	f, ok := l.r.Next()
	return f, ok, err
}

func (l *legacy) stats() Stats {
	r := l.rp.Load()
	if r == nil {
		return Stats{}
	}
	return r.Stats()
}
