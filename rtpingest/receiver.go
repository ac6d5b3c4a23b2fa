package rtpingest

import (
	"errors"
	"fmt"
)

// Codec names an RTP payload format.
type Codec string

// Payload formats the receiver assembles.
const (
	H264 Codec = "h264" // RFC 6184, packetization-mode 0 or 1
	H265 Codec = "h265" // RFC 7798, without DONL (sprop-max-don-diff 0)
	VP8  Codec = "vp8"  // RFC 7741
	VP9  Codec = "vp9"  // RFC 9628
	Opus Codec = "opus" // RFC 7587
)

// Config configures a Receiver.
type Config struct {
	Codec Codec
	// ReorderWindow is how many sequence numbers past a missing packet the
	// receiver waits for it before counting it lost: packets reordered by
	// less than this still make complete frames. It bounds the delay a loss
	// adds, in packets. Default 32; at most 100 (RFC 3550 MAX_MISORDER).
	ReorderWindow int
	// AudioGroupFrames is the number of Opus frames per MoQ group
	// (default 50, one second of 20 ms frames). Video groups start at
	// keyframes.
	AudioGroupFrames int
}

// RFC 3550 §A.1 constants.
const (
	maxDropout    = 3000
	maxMisorder   = 100
	seqMod        = 1 << 16
	minSequential = 2 // probation of a source when none is active
	// switchSequential is the probation of a new SSRC while another is
	// active: that many packets in sequence with none from the active
	// source in between. A sender that restarts with a new SSRC passes it
	// within a frame or two; two senders interleaving on one port do not
	// take turns.
	switchSequential = 8
	historySize      = 1024 // sequence numbers remembered to tell duplicates from late packets
	maxHeld          = 64 << 10
	noBadSeq         = seqMod + 1
)

type slot struct {
	used bool
	ext  uint64
	p    packet
	buf  []byte
}

func (s *slot) store(p *packet, ext uint64) {
	s.buf = append(s.buf[:0], p.payload...)
	s.p = *p
	s.p.payload = s.buf
	s.ext, s.used = ext, true
}

// frameState is the frame being assembled.
type frameState struct {
	open, damaged, tooLarge bool
	ts                      uint32
	pkts                    uint64 // well-formed packets in it
	data                    []byte
	keyframe                bool
	vcl                     bool // holds picture data, not only parameter sets or SEI
	inFU                    bool // a fragmentation unit is unfinished
}

// assembler is one payload format's depacketizer.
type assembler interface {
	// add appends payload's media to f and sets f's flags.
	add(f *frameState, payload []byte) error
	// begins reports whether payload certainly starts a frame, so that a
	// loss just before it cannot have cut this frame's head.
	begins(payload []byte) bool
	// noFrame reports a payload that carries no frame and is no error
	// (Opus DTX).
	noFrame(payload []byte) bool
	// perPacket: every packet is a frame.
	perPacket() bool
}

// Receiver assembles the frames of one RTP stream from the datagrams of
// its port. Use it from one goroutine; Stats may be called from any.
//
// Push each datagram, then call Next until it reports false:
//
//	for {
//		n, _, err := conn.ReadFrom(buf)
//		...
//		r.Push(buf[:n])
//		for f, ok := r.Next(); ok; f, ok = r.Next() {
//			submit(f.Group, f.Object, f.Data)
//		}
//	}
//
// The receiver does not check where datagrams come from: the caller should
// accept one source address (the sidecar does).
type Receiver struct {
	cfg Config
	asm assembler
	c   counters
	g   Grouper

	// The active source (RFC 3550 §A.1 state).
	active     bool
	everActive bool
	ssrc       uint32
	maxSeq     uint16
	cycles     uint64
	badSeq     uint32
	jump       slot   // the packet after a jump, kept until the next one confirms a restart
	next       uint64 // extended sequence number to release next
	slots      []slot // reorder window, indexed by extended sequence number
	nslots     uint64
	hist       []uint64 // extended sequence number + 1 of released packets
	gap        bool     // sequence numbers skipped since the last media packet
	waitKey    bool
	sawMarker  bool

	// A new SSRC on probation.
	candSSRC uint32
	candSeq  uint16
	candN    int
	cand     [switchSequential]slot

	f        frameState
	held     []byte // parameter sets that arrived alone, for the next frame
	heldPkts uint64

	out     []Frame
	outBufs [][]byte
	head    int
	rtcp    rtcpInfo
	err     error

	// noProbation adopts the first source at its first packet: the
	// one-frame-per-Push wrappers would otherwise return every frame one
	// packet late for good.
	noProbation bool
}

// NewReceiver returns a receiver for cfg.Codec.
func NewReceiver(cfg Config) (*Receiver, error) {
	r := &Receiver{cfg: cfg, badSeq: noBadSeq, hist: make([]uint64, historySize)}
	switch cfg.Codec {
	case H264:
		r.asm = h264{}
	case H265:
		r.asm = h265{}
	case VP8:
		r.asm = vp8{}
	case VP9:
		r.asm = vp9{}
	case Opus:
		r.asm = opus{}
		r.g.MaxGroupFrames = cfg.AudioGroupFrames
		if r.g.MaxGroupFrames <= 0 {
			r.g.MaxGroupFrames = 50
		}
	default:
		return nil, fmt.Errorf("rtpingest: unknown codec %q (want h264, h265, vp8, vp9 or opus)", cfg.Codec)
	}
	switch w := cfg.ReorderWindow; {
	case w == 0:
		r.cfg.ReorderWindow = 32
	case w < 1 || w > maxMisorder:
		return nil, fmt.Errorf("rtpingest: reorder window of %d packets, want 1 to %d", w, maxMisorder)
	}
	r.slots = make([]slot, r.cfg.ReorderWindow)
	return r, nil
}

// Stats returns the counters; safe from any goroutine. Counters read while
// Push runs may be mutually inconsistent by the packet in progress.
func (r *Receiver) Stats() Stats { return r.c.stats() }

// Source returns the active source's SSRC, and false while there is none
// (before the first source passed its probation, or after its BYE). Call it
// from Push's goroutine, e.g. to relate a source change (Stats.SourceChanges)
// to the sender's address.
func (r *Receiver) Source() (ssrc uint32, ok bool) { return r.ssrc, r.active }

// Next returns the next completed frame, in the order frames completed. Its
// Data is valid until the next Push.
func (r *Receiver) Next() (Frame, bool) {
	if r.head == len(r.out) {
		return Frame{}, false
	}
	r.head++
	return r.out[r.head-1], true
}

// Push takes one datagram from the RTP port; b may be reused when Push
// returns. It returns an error wrapping ErrMalformed for a datagram that is
// neither RTP nor RTCP or whose payload does not parse; the datagram is
// counted either way, and no other data is lost. Frames completed by this
// datagram (possibly several: a late packet can complete frames held behind
// it) are returned by Next.
func (r *Receiver) Push(b []byte) error {
	if r.head == len(r.out) {
		r.out, r.head = r.out[:0], 0
	}
	r.c.packets.Add(1)
	r.err = nil
	if isRTCP(b) {
		r.handleRTCP(b)
	} else {
		var p packet
		if err := parseRTP(b, &p); err != nil {
			r.c.malformed.Add(1)
			r.err = err
		} else if !r.active || p.ssrc != r.ssrc {
			r.probation(&p)
		} else {
			if r.candN > 0 { // the active source is alive: the candidate's run ends
				r.c.foreign.Add(uint64(r.candN))
				r.candN = 0
			}
			r.receive(&p)
		}
	}
	r.setBuffered()
	return r.err
}

// Flush ends the stream: packets held in the reorder window are released
// (missing ones counted lost), the frame in assembly is finished, a source
// still on probation is counted foreign. Call it at the end of input, not
// on a pause: a frame whose marker packet is still to come would be
// dropped.
func (r *Receiver) Flush() {
	if r.head == len(r.out) {
		r.out, r.head = r.out[:0], 0
	}
	if r.active {
		r.endSource()
	}
	r.c.foreign.Add(uint64(r.candN))
	r.candN = 0
	r.setBuffered()
}

func (r *Receiver) setBuffered() {
	n := r.nslots + uint64(r.candN) + r.f.pkts + r.heldPkts
	if r.jump.used {
		n++
	}
	r.c.buffered.Store(n)
}

func (r *Receiver) handleRTCP(b []byte) {
	if err := parseRTCP(b, &r.rtcp); err != nil {
		r.c.malformed.Add(1)
		r.err = err
		return
	}
	r.c.rtcp.Add(1)
	r.c.sr.Add(uint64(r.rtcp.sr))
	r.c.rr.Add(uint64(r.rtcp.rr))
	r.c.bye.Add(uint64(r.rtcp.bye))
	for _, ssrc := range r.rtcp.byeSSRCs[:r.rtcp.nBye] {
		if r.active && ssrc == r.ssrc { // RFC 3550 §6.6: the source leaves
			r.endSource()
			r.active = false
		}
		if r.candN > 0 && ssrc == r.candSSRC {
			r.c.foreign.Add(uint64(r.candN))
			r.candN = 0
		}
	}
}

// probation holds packets of an SSRC other than the active source's until
// it has sent enough in sequence (RFC 3550 §A.1 MIN_SEQUENTIAL), then makes
// it the active source and replays them.
func (r *Receiver) probation(p *packet) {
	if r.candN > 0 && p.ssrc == r.candSSRC && p.seq == r.candSeq+1 && r.candN < len(r.cand) {
		r.cand[r.candN].store(p, 0)
		r.candN++
	} else {
		r.c.foreign.Add(uint64(r.candN))
		r.cand[0].store(p, 0)
		r.candSSRC, r.candN = p.ssrc, 1
	}
	r.candSeq = p.seq
	need := minSequential
	if r.noProbation {
		need = 1
	}
	if r.active {
		need = switchSequential
	}
	if r.candN < need {
		return
	}
	if r.active {
		r.endSource()
	}
	if r.everActive {
		r.c.sourceChanges.Add(1)
	}
	r.everActive = true
	n := r.candN
	r.candN = 0
	r.startSource(r.candSSRC, r.cand[0].p.seq)
	for i := range n {
		r.receive(&r.cand[i].p)
	}
}

func (r *Receiver) startSource(ssrc uint32, seq uint16) {
	r.active, r.ssrc = true, ssrc
	r.maxSeq, r.cycles, r.badSeq = seq, seqMod, noBadSeq
	r.next = seqMod + uint64(seq)
	r.gap, r.waitKey, r.sawMarker = false, true, false
	r.g.forceNew = r.g.started
}

// endSource releases what the reorder window holds and finishes the frame
// in assembly: the source left, restarted or was replaced.
func (r *Receiver) endSource() {
	for r.nslots > 0 {
		r.advance(r.next + 1)
	}
	if r.f.open && (r.sawMarker || r.gap) {
		r.f.damaged = true // its marker packet never came, or its tail was lost
	}
	r.finish()
	if r.heldPkts > 0 { // parameter sets of a source that is gone
		r.c.dropped.Add(1)
		r.c.discarded.Add(r.heldPkts)
		r.held, r.heldPkts = r.held[:0], 0
	}
	if r.jump.used {
		r.c.late.Add(1)
		r.jump.used = false
	}
	r.gap = false
}

// receive handles a packet of the active source: RFC 3550 §A.1 update_seq,
// then the reorder window.
func (r *Receiver) receive(p *packet) {
	var ext uint64
	switch udelta := p.seq - r.maxSeq; {
	case udelta < maxDropout: // in order, with a permissible gap
		if p.seq < r.maxSeq {
			r.cycles += seqMod
		}
		r.maxSeq = p.seq
		ext = r.cycles + uint64(p.seq)
		if r.jump.used { // the jump was a stray packet
			r.c.late.Add(1)
			r.jump.used = false
		}
		r.badSeq = noBadSeq
	case udelta <= seqMod-maxMisorder: // a very large jump
		if uint32(p.seq) == r.badSeq && r.jump.used {
			// Two sequential packets: the sender restarted its
			// sequence numbers. Resynchronise on them.
			r.c.sourceChanges.Add(1)
			r.jump.used = false
			r.endSource()
			r.startSource(r.ssrc, r.jump.p.seq)
			r.receive(&r.jump.p)
			r.receive(p)
			return
		}
		if r.jump.used {
			r.c.late.Add(1)
		}
		r.jump.store(p, 0)
		r.badSeq = uint32(p.seq+1) & 0xffff
		return
	default: // duplicate or reordered
		ext = r.cycles + uint64(p.seq)
		if p.seq > r.maxSeq {
			ext -= seqMod
		}
	}
	w := uint64(len(r.slots))
	switch {
	case ext < r.next:
		if ext+historySize >= r.next && r.hist[ext%historySize] == ext+1 {
			r.c.duplicate.Add(1)
		} else {
			r.c.late.Add(1)
		}
		return
	case ext >= r.next+w:
		r.advance(ext - w + 1)
	}
	if ext == r.next {
		r.release(p)
		for s := &r.slots[r.next%w]; s.used && s.ext == r.next; s = &r.slots[r.next%w] {
			s.used = false
			r.nslots--
			r.release(&s.p)
		}
		return
	}
	s := &r.slots[ext%w]
	if s.used {
		r.c.duplicate.Add(1)
		return
	}
	s.store(p, ext)
	r.nslots++
}

// advance releases sequence numbers up to, not including, to: held packets
// go to the assembler, missing ones are counted lost.
func (r *Receiver) advance(to uint64) {
	w := uint64(len(r.slots))
	for r.next < to {
		if s := &r.slots[r.next%w]; s.used && s.ext == r.next {
			s.used = false
			r.nslots--
			r.release(&s.p)
			continue
		}
		r.c.lost.Add(1)
		r.gap = true
		r.next++
	}
}

// release hands the packet with sequence number r.next to the assembler.
func (r *Receiver) release(p *packet) {
	r.hist[r.next%historySize] = r.next + 1
	r.next++
	if len(p.payload) == 0 || r.asm.noFrame(p.payload) {
		r.c.empty.Add(1) // padding only or DTX; a gap before it stays pending
		return
	}
	f := &r.f
	gap := r.gap
	r.gap = false
	if f.open && p.ts != f.ts {
		// A new frame begins. A loss just before it may have taken the
		// previous frame's tail.
		if gap {
			f.damaged = true
		}
		r.finish()
	}
	if gap && r.asm.begins(p.payload) {
		gap = false // the loss ended a frame, not this one
	}
	if !f.open {
		f.open, f.ts = true, p.ts
	}
	if gap {
		f.damaged = true
	}
	if err := r.asm.add(f, p.payload); err != nil {
		switch {
		case errors.Is(err, ErrTooLarge):
			f.tooLarge = true
			f.pkts++
		case f.damaged && errors.Is(err, errNoStart):
			f.pkts++ // the loss took its start: not malformed
		default:
			r.c.malformed.Add(1)
			r.err = err
		}
		f.damaged = true
	} else {
		f.pkts++
	}
	if p.marker {
		r.sawMarker = true
		r.finish()
	} else if r.asm.perPacket() {
		r.finish()
	}
}

// finish ends the frame in assembly: delivered, held (parameter sets
// alone) or dropped.
func (r *Receiver) finish() {
	f := &r.f
	if !f.open {
		return
	}
	switch {
	case f.damaged || f.inFU:
		r.drop()
	case !f.vcl:
		if len(r.held)+len(f.data) > maxHeld {
			r.c.dropped.Add(1)
			r.c.discarded.Add(r.heldPkts)
			r.held, r.heldPkts = r.held[:0], 0
		}
		r.held = append(r.held, f.data...)
		r.heldPkts += f.pkts
	case r.waitKey && !f.keyframe:
		r.drop()
	default:
		r.emit()
	}
	f.open, f.damaged, f.tooLarge, f.keyframe, f.vcl, f.inFU = false, false, false, false, false, false
	f.data, f.pkts = f.data[:0], 0
}

func (r *Receiver) drop() {
	r.c.dropped.Add(1)
	r.c.discarded.Add(r.f.pkts)
}

func (r *Receiver) emit() {
	f := &r.f
	i := len(r.out)
	if i == len(r.outBufs) {
		r.outBufs = append(r.outBufs, nil)
	}
	var data []byte
	if len(r.held) > 0 {
		data = append(append(r.outBufs[i][:0], r.held...), f.data...)
	} else { // swap buffers rather than copy
		data, f.data = f.data, r.outBufs[i][:0]
	}
	r.outBufs[i] = data
	r.c.delivered.Add(f.pkts + r.heldPkts)
	r.c.frames.Add(1)
	r.held, r.heldPkts = r.held[:0], 0
	r.waitKey = false
	g, o := r.g.Next(f.keyframe)
	r.out = append(r.out, Frame{Data: data, Timestamp: f.ts, SSRC: r.ssrc, Keyframe: f.keyframe, Group: g, Object: o})
}
