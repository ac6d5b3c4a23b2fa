// Package rtpingest turns RTP from an encoder into media frames, one MoQ
// object per frame, and assigns their MoQ group and object IDs.
//
// A [Receiver] takes the datagrams of one RTP port and keeps RTP receive
// state per RFC 3550 §A.1: one active source (SSRC) with a probation before
// it is adopted, 16-bit sequence numbers extended across wraparound, and a
// resynchronisation after a jump of more than 3000 (MAX_DROPOUT). A small
// reorder window puts packets back in sequence order, so reordered packets
// still make complete frames. RTCP on the same port (rtcp-mux, RFC 5761) is
// recognised and counted, never parsed as media; a BYE ends the source.
//
// Frames (codec payload formats): H.264 access units (RFC 6184) and H.265
// access units (RFC 7798) in Annex-B form, VP8 frames (RFC 7741), VP9
// frames (RFC 9628), Opus packets (RFC 7587). A frame ends at the RTP marker
// bit or at a timestamp change, whichever comes first. A new MoQ group
// starts at each keyframe, and an audio group every Config.AudioGroupFrames
// frames; after a source change, frames are dropped until the new source's
// first keyframe, which starts a new group.
//
// Adversary: whoever can send datagrams to the port (the sidecar restricts
// the source address; see Receiver). Malformed packets and frames damaged by
// loss are dropped and counted, never passed on half-assembled, and every
// datagram ends in exactly one packet counter of [Stats].
package rtpingest

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Errors for dropped input; test with errors.Is.
var (
	ErrMalformed = errors.New("rtpingest: malformed RTP or RTCP packet")
	ErrLoss      = errors.New("rtpingest: packets lost, frame dropped")
	ErrTooLarge  = errors.New("rtpingest: frame exceeds the size limit")

	// errNoStart marks a continuation whose start is missing: malformed,
	// unless a loss just before it explains it.
	errNoStart = fmt.Errorf("%w: continuation without its start", ErrMalformed)
)

// MaxFrameSize bounds an assembled frame in bytes, so a peer cannot make the
// receiver grow without limit.
const MaxFrameSize = 4 << 20

// Frame is one encoded media frame, one MoQ object.
type Frame struct {
	// Data: H.264 and H.265, Annex-B NAL units (4-byte start codes),
	// parameter sets received alone first; VP8, VP9, one frame as the
	// encoder produced it; Opus, one packet.
	Data      []byte
	Timestamp uint32 // RTP timestamp
	SSRC      uint32
	Keyframe  bool   // decodable on its own (IDR, IRAP, VP8/VP9 key frame; every Opus packet)
	Group     uint64 // MoQ group ID
	Object    uint64 // MoQ object ID within Group
}

// Stats are a receiver's counters. Every datagram passed to Push is counted
// in Packets and, at any moment, in exactly one of Delivered, Discarded, Late,
// Duplicate, Empty, RTCP, Malformed, Foreign and Buffered:
//
//	Packets == Delivered + Discarded + Late + Duplicate + Empty + RTCP + Malformed + Foreign + Buffered
//
// Lost counts sequence numbers that never arrived (RFC 3550 §6.4.1
// "cumulative number of packets lost"); it is not part of the sum.
type Stats struct {
	Packets   uint64 // datagrams passed to Push
	Delivered uint64 // RTP packets in delivered frames
	Discarded uint64 // well-formed RTP packets of dropped frames
	Late      uint64 // arrived after their place in sequence was given up, or out of sequence beyond MAX_MISORDER
	Duplicate uint64 // a sequence number already received
	Empty     uint64 // no payload after padding (bandwidth probes), or Opus DTX
	RTCP      uint64 // RTCP compound packets on the RTP port (RFC 5761)
	Malformed uint64 // neither valid RTP nor valid RTCP, or a payload that does not parse
	Foreign   uint64 // RTP from an SSRC other than the active source's
	Buffered  uint64 // gauge: held in the reorder window, the source probation, or a frame not yet complete

	Lost          uint64 // sequence numbers skipped
	Frames        uint64 // frames delivered
	Dropped       uint64 // frames dropped: damaged by loss, malformed, too large, or before the source's first keyframe
	SourceChanges uint64 // a new SSRC adopted, or the source restarted its sequence numbers (RFC 3550 §A.1 resync)
	SenderReports uint64 // RTCP SR
	RecvReports   uint64 // RTCP RR
	Byes          uint64 // RTCP BYE
}

// Sum returns the sum of the per-packet counters, which equals Packets.
func (s Stats) Sum() uint64 {
	return s.Delivered + s.Discarded + s.Late + s.Duplicate + s.Empty + s.RTCP + s.Malformed + s.Foreign + s.Buffered
}

type counters struct {
	packets, delivered, discarded, late, duplicate, empty, rtcp, malformed, foreign, buffered atomic.Uint64
	lost, frames, dropped, sourceChanges, sr, rr, bye                                         atomic.Uint64
}

func (c *counters) stats() Stats {
	return Stats{Packets: c.packets.Load(), Delivered: c.delivered.Load(), Discarded: c.discarded.Load(),
		Late: c.late.Load(), Duplicate: c.duplicate.Load(), Empty: c.empty.Load(), RTCP: c.rtcp.Load(),
		Malformed: c.malformed.Load(), Foreign: c.foreign.Load(), Buffered: c.buffered.Load(),
		Lost: c.lost.Load(), Frames: c.frames.Load(), Dropped: c.dropped.Load(),
		SourceChanges: c.sourceChanges.Load(), SenderReports: c.sr.Load(), RecvReports: c.rr.Load(), Byes: c.bye.Load()}
}

// Grouper assigns MoQ group and object IDs to frames: a new group at each
// keyframe (a new group is where a subscriber can join), or every
// MaxGroupFrames frames when that is set (for audio, where every frame is a
// keyframe). Object IDs count from 0 within a group.
type Grouper struct {
	MaxGroupFrames int // 0: only keyframes start groups
	group, object  uint64
	started        bool
	forceNew       bool
}

// Next returns the group and object ID of the next frame.
func (g *Grouper) Next(keyframe bool) (group, object uint64) {
	switch {
	case !g.started:
		g.started = true
	case g.forceNew,
		g.MaxGroupFrames > 0 && g.object+1 >= uint64(g.MaxGroupFrames),
		g.MaxGroupFrames == 0 && keyframe:
		g.group++
		g.object = 0
	default:
		g.object++
	}
	g.forceNew = false
	return g.group, g.object
}
