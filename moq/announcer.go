package moq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

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
	// The library's Announce waits for its ctx or an answer, not for the
	// session's end: bound the goroutine by both.
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	res := make(chan error, 1)
	go func() { res <- s.Announce(actx, namespace) }()
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
// relay's upstream refused it. It may be called as soon as OnAnnounce has
// returned nil: it waits until the ANNOUNCE_OK is out.
func (s *Session) CancelAnnounce(namespace []string, reason string) error {
	// After the library has answered the ANNOUNCE (see controlStream):
	// cancelling first would make its ANNOUNCE_OK fail and stop its
	// control loop.
	if !s.lockCtl() {
		return ErrSessionClosed
	}
	defer s.unlockCtl()
	if err := s.ms.AnnounceCancel(s.ctx, namespace, moqtransport.ErrorCodeAnnouncementUnauthorized, reason); err != nil {
		return err
	}
	k := trackKey(namespace, "")
	s.mu.Lock()
	if s.peerAnnounced[k] > 0 {
		if s.peerAnnounced[k]--; s.peerAnnounced[k] == 0 {
			delete(s.peerAnnounced, k)
		}
	}
	s.mu.Unlock()
	return nil
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
	ns, n, ok := parseTuple(payload[off:])
	if !ok {
		return f, false
	}
	f.namespace = ns
	off += n
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

// parseTuple parses a draft-11 namespace tuple (count, then length-prefixed
// elements; at most 32) and returns it and the bytes it took.
func parseTuple(b []byte) ([]string, int, bool) {
	count, off, err := quicvarint.Parse(b)
	if err != nil || count > 32 {
		return nil, 0, false
	}
	ns := make([]string, 0, count)
	for i := uint64(0); i < count; i++ {
		l, n, err := quicvarint.Parse(b[off:])
		if err != nil {
			return nil, 0, false
		}
		off += n
		if l > uint64(len(b)-off) {
			return nil, 0, false
		}
		ns = append(ns, string(b[off:off+int(l)]))
		off += int(l)
	}
	return ns, off, true
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

// noteIncomingAnnounce records an incoming ANNOUNCE: its namespace, so a
// later UNANNOUNCE for it passes the filter, and its announcer parameter
// for handle, which runs next on the same goroutine.
func (s *Session) noteIncomingAnnounce(payload []byte) {
	f, ok := parseAnnounce(payload)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := trackKey(f.namespace, ""); s.peerAnnounced[k] < maxRequestID {
		s.peerAnnounced[k]++
	}
	if !f.has {
		return
	}
	if len(s.relayedAnnouncers) >= maxRequestID {
		clear(s.relayedAnnouncers) // never consumed: the library refused them
	}
	s.relayedAnnouncers[f.requestID] = f.announcer
}

// passUnannounce reports whether an incoming UNANNOUNCE (payload: the
// namespace tuple) names a namespace the peer announced and did not
// withdraw yet. v0.5.0 ends its whole control loop on an UNANNOUNCE for an
// unknown namespace, so the filter drops the others.
func (s *Session) passUnannounce(payload []byte) bool {
	ns, n, ok := parseTuple(payload)
	if !ok || n != len(payload) {
		return false // the library would fail on it too
	}
	k := trackKey(ns, "")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peerAnnounced[k] == 0 {
		return false
	}
	if s.peerAnnounced[k]--; s.peerAnnounced[k] == 0 {
		delete(s.peerAnnounced, k)
	}
	return true
}

// Unannounce sends UNANNOUNCE for a namespace this session announced.
// v0.5.0's own Unannounce is inverted (bug #6): it forgets a known
// namespace without sending anything and sends only for unknown ones. So
// call it until it has forgotten every announcement of namespace and
// sends. It waits for this session's ANNOUNCEs in flight: forgetting one
// whose ANNOUNCE_OK is still to come would stop v0.5.0's control loop.
func (s *Session) Unannounce(ctx context.Context, namespace []string) error {
	if s.closed() {
		return ErrSessionClosed
	}
	s.announceMu.Lock()
	defer s.announceMu.Unlock()
	for range maxRequestID + 1 {
		err := s.ms.Unannounce(ctx, namespace)
		if err == nil {
			return nil
		}
		if s.closed() {
			return ErrSessionClosed
		}
		if err.Error() != "unknown announcement namespace" { // v0.5.0's "forgot one"
			return fmt.Errorf("moq: unannounce %q: %w", namespace, err)
		}
	}
	return fmt.Errorf("moq: unannounce %q: more announcements than request IDs", namespace)
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
