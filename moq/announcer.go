package moq

import (
	"context"
	"encoding/binary"
	"errors"

	"github.com/mengelbart/moqtransport"
	"github.com/quic-go/quic-go/quicvarint"
)

// AnnouncerParameter is the ANNOUNCE parameter type (odd: a length-prefixed
// byte string, draft-11 §1.4.2) with which a relay forwarding an
// announcement upstream names the identity that announced it to the relay.
// It is a private extension of this project; v0.5.0 peers parse and ignore
// it.
const AnnouncerParameter = 0x6d71

// maxAnnouncerLen bounds the parameter value; longer ones are ignored.
const maxAnnouncerLen = 255

// msgTypeAnnounce is draft-11's ANNOUNCE.
const msgTypeAnnounce = 0x06

// pendingAnnouncer is the announcer parameter AnnounceFor wants added to
// its ANNOUNCE; the control-stream tap adds it and closes written.
type pendingAnnouncer struct {
	nsKey     string
	announcer string
	written   chan struct{}
}

// AnnounceFor is Announce for a relay forwarding an announcement upstream:
// the ANNOUNCE carries announcer (the identity name the relay authenticated
// the publisher as; "" for none) in the AnnouncerParameter. The peer gets
// it in Config.OnRelayedAnnounce; whether it believes it is the peer's
// policy. Errors as Announce.
func (s *Session) AnnounceFor(ctx context.Context, namespace []string, announcer string) error {
	if announcer == "" {
		return s.Announce(ctx, namespace)
	}
	if len(announcer) > maxAnnouncerLen {
		return errors.New("moq: announcer name longer than 255 bytes")
	}
	// One at a time per session, so the tap adds each announcer to its own
	// ANNOUNCE.
	select {
	case s.announceForSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	p := &pendingAnnouncer{nsKey: trackKey(namespace, ""), announcer: announcer, written: make(chan struct{})}
	s.mu.Lock()
	s.pendingAnnounce = p
	s.mu.Unlock()
	res := make(chan error, 1)
	go func() { res <- s.Announce(ctx, namespace) }()
	select {
	case <-p.written:
	case err := <-res:
		res <- err
	}
	s.mu.Lock()
	s.pendingAnnounce = nil
	s.mu.Unlock()
	<-s.announceForSem
	return <-res
}

// CancelAnnounce withdraws the peer's accepted announcement of namespace
// (ANNOUNCE_CANCEL, error code 0x1 unauthorized, with reason), e.g. when a
// relay's upstream refused it.
func (s *Session) CancelAnnounce(namespace []string, reason string) error {
	if s.closed() {
		return ErrSessionClosed
	}
	return s.ms.AnnounceCancel(s.ctx, namespace, moqtransport.ErrorCodeAnnouncementUnauthorized, reason)
}

// tapOutgoingAnnounce returns msg with the pending announcer parameter
// added if msg is the ANNOUNCE it is meant for, else msg.
func (s *Session) tapOutgoingAnnounce(msg []byte) []byte {
	s.mu.Lock()
	p := s.pendingAnnounce
	s.mu.Unlock()
	if p == nil {
		return msg
	}
	out, ns, ok := addAnnounceParameter(msg, AnnouncerParameter, []byte(p.announcer))
	if !ok || trackKey(ns, "") != p.nsKey {
		return msg
	}
	s.mu.Lock()
	if s.pendingAnnounce == p {
		s.pendingAnnounce = nil
		close(p.written)
	}
	s.mu.Unlock()
	return out
}

// announceFields are the parts of a draft-11 ANNOUNCE message.
type announceFields struct {
	requestID uint64
	namespace []string
	nsEnd     int    // offset in the payload after the namespace tuple
	params    uint64 // number of parameters
	paramsAt  int    // offset in the payload of the first parameter
	announcer string // value of AnnouncerParameter, if present and sane
	has       bool
}

// parseAnnounce parses an ANNOUNCE payload (after type and length). The
// bytes come from the peer: every length is checked.
func parseAnnounce(payload []byte) (announceFields, bool) {
	var f announceFields
	off := 0
	next := func() (uint64, bool) {
		v, n, err := quicvarint.Parse(payload[off:])
		if err != nil {
			return 0, false
		}
		off += n
		return v, true
	}
	var ok bool
	if f.requestID, ok = next(); !ok {
		return f, false
	}
	count, ok := next()
	if !ok || count > 32 {
		return f, false
	}
	for i := uint64(0); i < count; i++ {
		l, ok := next()
		if !ok || l > uint64(len(payload)-off) {
			return f, false
		}
		f.namespace = append(f.namespace, string(payload[off:off+int(l)]))
		off += int(l)
	}
	f.nsEnd = off
	if f.params, ok = next(); !ok {
		return f, false
	}
	f.paramsAt = off
	for i := uint64(0); i < f.params; i++ {
		typ, ok := next()
		if !ok {
			return f, false
		}
		if typ%2 == 0 {
			if _, ok := next(); !ok {
				return f, false
			}
			continue
		}
		l, ok := next()
		if !ok || l > uint64(len(payload)-off) {
			return f, false
		}
		if typ == AnnouncerParameter && l <= maxAnnouncerLen {
			f.announcer, f.has = string(payload[off:off+int(l)]), true
		}
		off += int(l)
	}
	return f, off == len(payload)
}

// splitControl splits one control message into type and payload.
func splitControl(msg []byte) (typ uint64, payload []byte, ok bool) {
	typ, n, err := quicvarint.Parse(msg)
	if err != nil || len(msg) < n+2 {
		return 0, nil, false
	}
	l := int(binary.BigEndian.Uint16(msg[n:]))
	if len(msg) != n+2+l {
		return 0, nil, false
	}
	return typ, msg[n+2:], true
}

// addAnnounceParameter returns the ANNOUNCE msg with one more parameter
// (odd typ, value), and its namespace. ok is false if msg is not a
// well-formed ANNOUNCE or the result would not fit a control message.
func addAnnounceParameter(msg []byte, typ uint64, value []byte) (out []byte, namespace []string, ok bool) {
	mt, payload, ok := splitControl(msg)
	if !ok || mt != msgTypeAnnounce {
		return nil, nil, false
	}
	f, ok := parseAnnounce(payload)
	if !ok {
		return nil, nil, false
	}
	np := make([]byte, 0, len(payload)+16+len(value))
	np = append(np, payload[:f.nsEnd]...)
	np = quicvarint.Append(np, f.params+1)
	np = append(np, payload[f.paramsAt:]...)
	np = quicvarint.Append(np, typ)
	np = quicvarint.Append(np, uint64(len(value)))
	np = append(np, value...)
	if len(np) > 0xffff {
		return nil, nil, false
	}
	out = quicvarint.Append(nil, msgTypeAnnounce)
	out = binary.BigEndian.AppendUint16(out, uint16(len(np)))
	return append(out, np...), f.namespace, true
}

// noteIncomingAnnounce records the announcer parameter of an incoming
// ANNOUNCE for handle, which runs next on the same goroutine.
func (s *Session) noteIncomingAnnounce(payload []byte) {
	f, ok := parseAnnounce(payload)
	if !ok || !f.has {
		return
	}
	s.mu.Lock()
	if len(s.relayedAnnouncers) >= maxRequestID {
		clear(s.relayedAnnouncers) // never consumed: the library refused them
	}
	s.relayedAnnouncers[f.requestID] = f.announcer
	s.mu.Unlock()
}

// takeRelayedAnnouncer returns and forgets the announcer parameter of the
// ANNOUNCE with this request ID.
func (s *Session) takeRelayedAnnouncer(requestID uint64) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.relayedAnnouncers[requestID]
	delete(s.relayedAnnouncers, requestID)
	return a, ok
}
