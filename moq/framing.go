package moq

import (
	"errors"
	"fmt"
)

// This file holds the incremental parser for MoQT draft-11 data-stream
// framing (subgroup streams 0x08-0x0d and fetch streams 0x05). It exists only
// to protect moqtransport v0.5.0, which allocates make([]byte, peerLength)
// before reading a payload (bug #3 in docs/moq.md): the guard sees every byte
// before the library does and refuses to hand over a length it must not trust.
//
// The parser never consumes the byte that completes an object or a forbidden
// length field without telling its caller first, so the caller can hold that
// byte back (for flow control or rejection).

// Stream types of draft-11 data streams.
const (
	streamTypeFetch       = 0x05
	streamTypeSubgroupMin = 0x08
	streamTypeSubgroupMax = 0x0d
)

// frameEvent is what feed stopped for.
type frameEvent int

const (
	// evNone: all input consumed, nothing to report.
	evNone frameEvent = iota
	// evHeader: the stream header was parsed completely (Alias/RequestID,
	// GroupID are valid).
	evHeader
	// evObjectPending: the next byte completes an object. The caller must
	// call grant() before feeding that byte.
	evObjectPending
)

var (
	errBadStreamType     = errors.New("moq: unknown data stream type")
	errExtensionsRefused = errors.New("moq: object extension headers are not supported by moqtransport v0.5.0")
)

type frameState int

const (
	stType frameState = iota
	stAlias
	stGroup
	stSubgroup
	stPriority
	stFetchGroup
	stFetchSubgroup
	stObjectID
	stFetchPriority
	stExtLen
	stPayloadLen
	stStatus
	stPayload
)

// frameParser follows the framing of one incoming data stream.
type frameParser struct {
	maxPayload uint64

	state frameState
	// varint being accumulated
	vlen, vhave int
	vval        uint64

	streamType uint64
	fetch      bool
	hasExt     bool
	// Identifier is the track alias (subgroup streams) or request ID (fetch).
	Identifier uint64
	GroupID    uint64
	// Objects counts objects completed so far.
	Objects uint64

	remaining uint64 // payload bytes left
	granted   bool   // caller allowed the completing byte
	lastLen   uint64 // last payload length accepted (for tests)
}

func newFrameParser(maxPayload uint64) *frameParser {
	return &frameParser{maxPayload: maxPayload}
}

// grant allows the parser to consume the byte that completes the pending
// object.
func (p *frameParser) grant() { p.granted = true }

// varintWouldComplete reports whether byte b would complete the varint being
// read, without consuming it.
func (p *frameParser) varintWouldComplete(b byte) bool {
	if p.vhave == 0 {
		return 1<<(b>>6) == 1
	}
	return p.vhave+1 == p.vlen
}

// peekVarint returns the value the varint would have after byte b. Only
// valid when varintWouldComplete(b).
func (p *frameParser) peekVarint(b byte) uint64 {
	if p.vhave == 0 {
		return uint64(b & 0x3f)
	}
	return p.vval<<8 | uint64(b)
}

func (p *frameParser) pushVarint(b byte) (uint64, bool) {
	if p.vhave == 0 {
		p.vlen = 1 << (b >> 6)
		p.vval = uint64(b & 0x3f)
	} else {
		p.vval = p.vval<<8 | uint64(b)
	}
	p.vhave++
	if p.vhave == p.vlen {
		v := p.vval
		p.vhave, p.vlen, p.vval = 0, 0, 0
		return v, true
	}
	return 0, false
}

// feed consumes bytes of b until it is exhausted, an event occurs or the
// framing is refused. It returns how many bytes were consumed. On error, the
// byte that would have completed the offending field is NOT consumed, so the
// consumed prefix is always safe to hand to moqtransport.
func (p *frameParser) feed(b []byte) (int, frameEvent, error) {
	i := 0
	for i < len(b) {
		c := b[i]
		switch p.state {
		case stPayload:
			// Bulk skip, stopping before the byte that completes the object.
			if p.remaining > 1 {
				n := uint64(len(b) - i)
				if n > p.remaining-1 {
					n = p.remaining - 1
				}
				p.remaining -= n
				i += int(n)
				continue
			}
			if !p.granted {
				return i, evObjectPending, nil
			}
			p.granted = false
			p.remaining = 0
			i++
			p.objectDone()
			continue
		case stPriority, stFetchPriority:
			i++
			if p.state == stPriority {
				p.state = stObjectID
				return i, evHeader, nil
			}
			p.state = stExtLen
			continue
		}

		// Every other state reads a varint. Check before consuming the final
		// byte whether the value is acceptable / completes an object.
		if p.varintWouldComplete(c) {
			v := p.peekVarint(c)
			switch p.state {
			case stType:
				if v != streamTypeFetch && (v < streamTypeSubgroupMin || v > streamTypeSubgroupMax) {
					return i, evNone, fmt.Errorf("%w 0x%x", errBadStreamType, v)
				}
			case stExtLen:
				if v > 0 && p.hasExt {
					return i, evNone, errExtensionsRefused
				}
			case stPayloadLen:
				if v > p.maxPayload {
					return i, evNone, &ObjectTooLargeError{Size: v, Max: p.maxPayload}
				}
			case stStatus:
				if !p.granted {
					return i, evObjectPending, nil
				}
			}
		}
		v, done := p.pushVarint(c)
		i++
		if !done {
			continue
		}
		switch p.state {
		case stType:
			p.streamType = v
			if v == streamTypeFetch {
				p.fetch = true
				p.hasExt = true
			} else {
				p.hasExt = v&1 == 1
			}
			p.state = stAlias
		case stAlias:
			p.Identifier = v
			if p.fetch {
				p.state = stFetchGroup
				return i, evHeader, nil
			}
			p.state = stGroup
		case stGroup:
			p.GroupID = v
			if p.streamType == 0x0c || p.streamType == 0x0d {
				p.state = stSubgroup
			} else {
				p.state = stPriority
			}
		case stSubgroup:
			p.state = stPriority
		case stFetchGroup:
			p.state = stFetchSubgroup
		case stFetchSubgroup:
			p.state = stObjectID
		case stObjectID:
			if p.fetch {
				p.state = stFetchPriority
			} else if p.hasExt {
				p.state = stExtLen
			} else {
				p.state = stPayloadLen
			}
		case stExtLen:
			// v == 0 here (non-zero refused above)
			p.state = stPayloadLen
		case stPayloadLen:
			p.lastLen = v
			if v == 0 {
				p.state = stStatus
			} else {
				p.remaining = v
				p.state = stPayload
			}
		case stStatus:
			p.granted = false
			p.objectDone()
		}
	}
	return i, evNone, nil
}

func (p *frameParser) objectDone() {
	p.Objects++
	if p.fetch {
		p.state = stFetchGroup
	} else {
		p.state = stObjectID
	}
}

// isFetch reports whether this is a FETCH stream.
func (p *frameParser) isFetch() bool { return p.fetch }
