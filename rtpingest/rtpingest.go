// Package rtpingest turns RTP from an encoder into media frames, one MoQ
// object per frame: H.264 (RFC 6184) access units and Opus (RFC 7587)
// packets. It assigns MoQ group and object IDs: a new group at each H.264
// keyframe, object IDs sequential within a group.
//
// The input is untrusted: malformed packets and frames damaged by loss are
// dropped and counted, never passed on half-assembled.
package rtpingest

import (
	"errors"
	"sync/atomic"
)

// Errors for dropped input; test with errors.Is.
var (
	ErrMalformed = errors.New("rtpingest: malformed RTP payload")
	ErrLoss      = errors.New("rtpingest: packets lost, frame dropped")
	ErrTooLarge  = errors.New("rtpingest: frame exceeds the size limit")
)

// Frame is one encoded media frame.
type Frame struct {
	Data      []byte // H.264: Annex-B NAL units; Opus: one packet
	Timestamp uint32 // RTP timestamp
	Keyframe  bool   // decodable on its own (H.264 IDR; every Opus packet)
}

// Stats counts a depacketizer's input and drops.
type Stats struct {
	Packets   uint64
	Frames    uint64
	Lost      uint64 // RTP packets missing by sequence number
	Dropped   uint64 // frames dropped: damaged by loss, malformed, or too large
	Malformed uint64 // packets that did not parse
}

type counters struct {
	packets, frames, lost, dropped, malformed atomic.Uint64
}

func (c *counters) stats() Stats {
	return Stats{Packets: c.packets.Load(), Frames: c.frames.Load(), Lost: c.lost.Load(),
		Dropped: c.dropped.Load(), Malformed: c.malformed.Load()}
}

// Grouper assigns MoQ group and object IDs to frames: a new group at each
// keyframe (a new group is where a subscriber can join), or every
// MaxGroupFrames frames when that is set (for audio, where every frame is a
// keyframe). Object IDs count from 0 within a group.
type Grouper struct {
	MaxGroupFrames int // 0: only keyframes start groups
	group, object  uint64
	started        bool
}

// Next returns the group and object ID of the next frame.
func (g *Grouper) Next(keyframe bool) (group, object uint64) {
	switch {
	case !g.started:
		g.started = true
	case g.MaxGroupFrames > 0 && g.object+1 >= uint64(g.MaxGroupFrames),
		g.MaxGroupFrames == 0 && keyframe:
		g.group++
		g.object = 0
	default:
		g.object++
	}
	return g.group, g.object
}
