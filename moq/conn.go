package moq

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mengelbart/moqtransport"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
)

// Stream error codes the guard uses when it stops a stream.
const (
	stopCodeObjectTooLarge = 0x100
	stopCodeBadFraming     = 0x101
)

// guardedConn is the moqtransport.Connection handed to the library. It adds
// what v0.5.0 lacks: a size guard and flow-control credit on incoming data
// streams, blocking stream opening (waiting for stream credit), datagram
// discarding, and a tap on our own outgoing SUBSCRIBE messages to learn the
// track alias of each subscription.
type guardedConn struct {
	conn        *quic.Conn
	perspective moqtransport.Perspective
	sess        *Session
}

var _ moqtransport.Connection = (*guardedConn)(nil)

func (c *guardedConn) AcceptStream(ctx context.Context) (moqtransport.Stream, error) {
	s, err := c.conn.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return c.sess.newControlStream(s), nil
}

func (c *guardedConn) AcceptUniStream(ctx context.Context) (moqtransport.ReceiveStream, error) {
	s, err := c.conn.AcceptUniStream(ctx)
	if err != nil {
		c.sess.libraryStopped(ctx)
		return nil, err
	}
	c.sess.stats.streamsAccepted.Add(1)
	return newGuardedStream(s, c.sess), nil
}

func (c *guardedConn) OpenStream() (moqtransport.Stream, error) {
	s, err := c.conn.OpenStream()
	if err != nil {
		return nil, err
	}
	return c.sess.newControlStream(s), nil
}

func (c *guardedConn) OpenStreamSync(ctx context.Context) (moqtransport.Stream, error) {
	s, err := c.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return c.sess.newControlStream(s), nil
}

// OpenUniStream waits for stream credit (bounded by StreamCreditTimeout and
// the connection's life) instead of failing with "too many open streams"
// (bug #4): the library calls it from OpenSubgroup, which we only call from
// per-subscriber writer goroutines, never from a handler.
func (c *guardedConn) OpenUniStream() (moqtransport.SendStream, error) {
	s, err := c.conn.OpenUniStream()
	if err != nil {
		var limitErr *quic.StreamLimitReachedError
		if !errors.As(err, &limitErr) {
			return nil, err
		}
		c.sess.stats.streamCreditWaits.Add(1)
		ctx, cancel := context.WithTimeout(c.conn.Context(), c.sess.cfg.StreamCreditTimeout)
		defer cancel()
		s, err = c.conn.OpenUniStreamSync(ctx)
		if err != nil {
			return nil, err
		}
	}
	st := &sendStream{s: s, timeout: c.sess.cfg.WriteTimeout}
	c.sess.lastOpened.Store(st)
	return st, nil
}

func (c *guardedConn) OpenUniStreamSync(ctx context.Context) (moqtransport.SendStream, error) {
	s, err := c.conn.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return &sendStream{s: s, timeout: c.sess.cfg.WriteTimeout}, nil
}

func (c *guardedConn) SendDatagram(b []byte) error { return c.conn.SendDatagram(b) }

// ReceiveDatagram never returns a datagram: this adapter publishes over
// streams only, and v0.5.0 tears the whole session down on a datagram for an
// unknown track alias or one it cannot parse. Datagrams are counted and
// discarded.
func (c *guardedConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	for {
		if _, err := c.conn.ReceiveDatagram(ctx); err != nil {
			return nil, err
		}
		c.sess.stats.datagramsDiscarded.Add(1)
	}
}

func (c *guardedConn) CloseWithError(code uint64, msg string) error {
	return c.conn.CloseWithError(quic.ApplicationErrorCode(code), msg)
}

func (c *guardedConn) Context() context.Context { return c.conn.Context() }

func (c *guardedConn) Protocol() moqtransport.Protocol { return moqtransport.ProtocolQUIC }

func (c *guardedConn) Perspective() moqtransport.Perspective { return c.perspective }

// controlStream is the bidirectional control stream.
//
// Writes are tapped to learn (request ID -> track alias) of our SUBSCRIBEs;
// the library writes exactly one whole control message per Write call.
//
// Reads are filtered: v0.5.0 ends the whole control loop (the session stops
// handling requests) when an UNSUBSCRIBE or SUBSCRIBE_UPDATE names a request
// ID it already ended with SUBSCRIBE_DONE — which happens whenever the two
// cross on the wire — or on any FETCH_CANCEL after it refused the FETCH.
// Such messages are dropped here. To make "is it still live?" and the
// library's handling atomic with respect to our SUBSCRIBE_DONE, the reader
// holds Session.ctlSem from the check until the library asks for more bytes
// (it reads only after handling everything it was given); subscriber.finish
// takes ctlSem around its SUBSCRIBE_DONE.
type controlStream struct {
	s    *quic.Stream
	sess *Session

	raw     []byte // read from the stream, not yet split into messages
	ready   []byte // complete, filtered messages for the library
	holding bool   // we hold sess.ctlSem
	readErr error
	buf     []byte
}

func (s *controlStream) Read(p []byte) (int, error) {
	for len(s.ready) == 0 {
		// The library has handled everything we gave it: release before a
		// possibly long wait for more bytes.
		if s.holding {
			s.sess.unlockCtl()
			s.holding = false
		}
		if s.readErr != nil {
			return 0, s.readErr
		}
		if s.buf == nil {
			s.buf = make([]byte, 4096)
		}
		n, err := s.s.Read(s.buf)
		s.raw = append(s.raw, s.buf[:n]...)
		s.readErr = err
		s.split()
	}
	n := copy(p, s.ready)
	s.ready = s.ready[n:]
	return n, nil
}

// split moves complete messages from raw to ready, dropping stale
// UNSUBSCRIBEs. Control messages are: type varint, 16-bit length, payload.
func (s *controlStream) split() {
	for {
		typ, n, err := quicvarint.Parse(s.raw)
		if err != nil || len(s.raw) < n+2 {
			break
		}
		size := n + 2 + int(binary.BigEndian.Uint16(s.raw[n:]))
		if len(s.raw) < size {
			break
		}
		msg := s.raw[:size]
		if typ == msgTypeFetchCancel {
			// We refuse every FETCH, so any FETCH_CANCEL names a request the
			// library has forgotten.
			s.sess.stats.staleUnsubscribes.Add(1)
			s.raw = s.raw[size:]
			continue
		}
		if typ == msgTypeAnnounce {
			// Held until the library has answered it, so CancelAnnounce
			// (which takes ctlSem) cannot overtake the ANNOUNCE_OK.
			if !s.holding {
				if !s.sess.lockCtl() {
					break
				}
				s.holding = true
			}
			s.sess.noteIncomingAnnounce(msg[n+2:])
		}
		if typ == msgTypeUnannounce && !s.sess.passUnannounce(msg[n+2:]) {
			s.sess.stats.staleUnannounces.Add(1)
			s.raw = s.raw[size:]
			continue
		}
		if typ == msgTypeUnsubscribe || typ == msgTypeSubscribeUpdate {
			if !s.holding {
				if !s.sess.lockCtl() {
					break // session gone; nothing matters any more
				}
				s.holding = true
			}
			reqID, _, perr := quicvarint.Parse(msg[n+2:])
			if perr == nil && !s.sess.isLiveSubscriber(reqID) {
				s.sess.stats.staleUnsubscribes.Add(1)
				s.raw = s.raw[size:]
				continue
			}
			if perr == nil && typ == msgTypeUnsubscribe {
				// v0.5.0 only cancels the track's context, which a writer
				// sees at its next OpenSubgroup: one that keeps writing into
				// the same group would never notice. Tell our writer now;
				// its SUBSCRIBE_DONE waits for ctlSem, i.e. until the
				// library has handled this UNSUBSCRIBE.
				s.sess.peerUnsubscribed(reqID)
			}
		}
		s.ready = append(s.ready, msg...)
		s.raw = s.raw[size:]
	}
	// Compact so raw does not grow without bound.
	if len(s.raw) == 0 {
		s.raw = s.raw[:0:0]
	}
}

// Control message types the filter looks at (draft-11).
const (
	msgTypeSubscribeUpdate = 0x02
	msgTypeUnsubscribe     = 0x0a
	msgTypeFetchCancel     = 0x17
	msgTypeUnannounce      = 0x09
)

func (s *controlStream) Write(p []byte) (int, error) {
	s.sess.observeControlMessage(p)
	if out := s.sess.tapOutgoingAnnounce(p); len(out) != len(p) {
		if _, err := s.s.Write(out); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return s.s.Write(p)
}

func (s *controlStream) Close() error      { return s.s.Close() }
func (s *controlStream) Reset(code uint32) { s.s.CancelWrite(quic.StreamErrorCode(code)) }
func (s *controlStream) Stop(code uint32)  { s.s.CancelRead(quic.StreamErrorCode(code)) }
func (s *controlStream) StreamID() uint64  { return uint64(s.s.StreamID()) }

// parseSubscribe extracts request ID and track alias from a serialized
// draft-11 SUBSCRIBE (type 0x03, 16-bit length, request ID, track alias).
func parseSubscribe(msg []byte) (requestID, alias uint64, ok bool) {
	typ, n, err := quicvarint.Parse(msg)
	if err != nil || typ != 0x03 {
		return 0, 0, false
	}
	msg = msg[n:]
	if len(msg) < 2 {
		return 0, 0, false
	}
	length := int(binary.BigEndian.Uint16(msg))
	msg = msg[2:]
	if len(msg) < length {
		return 0, 0, false
	}
	msg = msg[:length]
	requestID, n, err = quicvarint.Parse(msg)
	if err != nil {
		return 0, 0, false
	}
	alias, _, err = quicvarint.Parse(msg[n:])
	if err != nil {
		return 0, 0, false
	}
	return requestID, alias, true
}

// sendStream is an outgoing data stream. A Write that blocks for longer
// than timeout fails, so a subscriber that stops reading cannot pin its
// writer goroutine forever. One watchdog timer per stream, re-armed per
// Write, does this: a write deadline per Write would cost quic-go a timer
// allocation on every Write that has to wait for its send loop.
//
// A subscriber's writer goroutine turns coalescing on for the subgroup
// streams it opens: Writes are then kept (up to coalesceLimit bytes) until
// Flush, which the writer calls whenever its queue is empty. An idle
// writer so flushes every object at once, and a writer with a backlog
// hands quic-go many objects per Write, which quic-go packs into full
// packets sent together, instead of waiting for quic-go's send loop once
// per object.
type sendStream struct {
	s       *quic.SendStream
	timeout time.Duration

	watchdog *time.Timer // created by the first write
	mu       sync.Mutex  // orders the watchdog against the end of a write
	writing  bool
	expired  bool // the watchdog set a deadline in the past

	// Used only by the stream's one writer goroutine.
	coalesce bool
	pending  *[]byte // from pendingPool; nil when empty
}

// coalesceLimit bounds the bytes a coalescing stream keeps before it
// writes them: about a dozen full packets.
const coalesceLimit = 16 << 10

var pendingPool = sync.Pool{New: func() any { b := make([]byte, 0, coalesceLimit); return &b }}

func (s *sendStream) Write(p []byte) (int, error) {
	if !s.coalesce {
		return s.write(p)
	}
	if s.pending != nil && len(*s.pending)+len(p) > coalesceLimit {
		if err := s.Flush(); err != nil {
			return 0, err
		}
	}
	if len(p) > coalesceLimit {
		return s.write(p)
	}
	if s.pending == nil {
		s.pending = pendingPool.Get().(*[]byte)
	}
	*s.pending = append(*s.pending, p...)
	return len(p), nil
}

// Flush writes what coalescing kept.
func (s *sendStream) Flush() error {
	if s.pending == nil {
		return nil
	}
	_, err := s.write(*s.pending)
	s.releasePending()
	return err
}

func (s *sendStream) releasePending() {
	if s.pending != nil {
		*s.pending = (*s.pending)[:0]
		pendingPool.Put(s.pending)
		s.pending = nil
	}
}

func (s *sendStream) write(p []byte) (int, error) {
	s.mu.Lock()
	if s.expired {
		// The watchdog fired as the previous write ended: clear its deadline.
		_ = s.s.SetWriteDeadline(time.Time{})
		s.expired = false
	}
	s.writing = true
	s.mu.Unlock()
	if s.watchdog == nil {
		s.watchdog = time.AfterFunc(s.timeout, s.expire)
	} else {
		s.watchdog.Reset(s.timeout)
	}
	n, err := s.s.Write(p)
	s.mu.Lock()
	s.writing = false
	s.mu.Unlock()
	s.watchdog.Stop()
	return n, err
}

// expire ends the write in progress, if any: a deadline in the past makes
// quic-go return it with a timeout error.
func (s *sendStream) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writing {
		s.expired = true
		_ = s.s.SetWriteDeadline(time.Unix(1, 0))
	}
}

// Close flushes what coalescing kept, then closes the stream (FIN).
func (s *sendStream) Close() error {
	if err := s.Flush(); err != nil {
		return err
	}
	return s.s.Close()
}

func (s *sendStream) Reset(code uint32) {
	s.releasePending()
	s.s.CancelWrite(quic.StreamErrorCode(code))
}
func (s *sendStream) StreamID() uint64 { return uint64(s.s.StreamID()) }

// inbound is the per-track-alias state of one of our subscriptions: the
// credit that keeps moqtransport's 100-slot RemoteTrack channel from
// overflowing, and wire-level counters.
//
// Credit goes to the oldest stream first. A subscriber behind by many
// groups has one stream per group buffered in QUIC, each read by its own
// goroutine up to this gate. Served in turn, the oldest group's last object
// would come after an object of every newer group: a reorder of groups ×
// objects per group, which an SFrame replay window (RFC 9605 §4.4.3) of
// fewer counters turns into loss. So the streams holding a complete object
// (contenders) are served by ascending stream ID, the order the peer opened
// them, and a free credit waits for the oldest contender while it is busy
// handing its previous object to the library. A stream stops contending
// before it reads from the network, which may block, and when it ends, so a
// stream that has nothing buffered never holds the others up.
type inbound struct {
	mu          sync.Mutex
	held        int             // credits in use: objects in the library's channel
	contenders  []*creditWaiter // ascending stream ID
	disabled    chan struct{}
	once        sync.Once
	wireObjects atomic.Uint64 // objects completely handed to the library
	oversize    atomic.Uint64 // streams refused by the size guard
}

// creditWaiter is a stream's place at its subscription's gate.
type creditWaiter struct {
	id         uint64
	contending bool
	waiting    bool          // blocked in acquire
	ready      chan struct{} // 1 slot: a credit granted while waiting
}

func newInbound() *inbound {
	return &inbound{disabled: make(chan struct{})}
}

func (in *inbound) isDisabled() bool {
	select {
	case <-in.disabled:
		return true
	default:
		return false
	}
}

// tryAcquire takes a credit for w's next object if one is free and no
// older stream contends; otherwise w contends and the caller must acquire.
func (in *inbound) tryAcquire(w *creditWaiter) bool {
	if in.isDisabled() {
		return true
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.takeLocked(w)
}

// acquire waits for a credit for w's next object. It reports false if ctx
// ended first.
func (in *inbound) acquire(ctx context.Context, w *creditWaiter) bool {
	if in.isDisabled() {
		return true
	}
	in.mu.Lock()
	if in.takeLocked(w) {
		in.mu.Unlock()
		return true
	}
	if w.ready == nil {
		w.ready = make(chan struct{}, 1)
	}
	w.waiting = true
	in.mu.Unlock()
	select {
	case <-w.ready:
		return true
	case <-in.disabled:
		in.leave(w)
		return true
	case <-ctx.Done():
		in.leave(w)
		return false
	}
}

// takeLocked makes w a contender (in stream ID order) and takes a credit
// for it if one is free and w is the oldest contender.
func (in *inbound) takeLocked(w *creditWaiter) bool {
	if !w.contending {
		w.contending = true
		i, _ := slices.BinarySearchFunc(in.contenders, w.id, func(x *creditWaiter, id uint64) int { return cmp.Compare(x.id, id) })
		in.contenders = slices.Insert(in.contenders, i, w)
	}
	if in.held < libraryQueueCredit && in.contenders[0] == w {
		in.held++
		return true
	}
	return false
}

// leave ends w's contention: it is about to read from the network, it
// ended, or it stopped waiting. A credit granted to it meanwhile is passed on.
func (in *inbound) leave(w *creditWaiter) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !w.contending {
		return
	}
	w.contending, w.waiting = false, false
	in.contenders = slices.DeleteFunc(in.contenders, func(x *creditWaiter) bool { return x == w })
	select {
	case <-w.ready:
		in.held--
	default:
	}
	in.grantLocked()
}

// release returns the credit of an object read out of the library.
func (in *inbound) release() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.held > 0 {
		in.held--
	}
	in.grantLocked()
}

// grantLocked gives a free credit to the oldest contender if it waits; if
// it is busy, the credit stays free for its next tryAcquire.
func (in *inbound) grantLocked() {
	if in.held < libraryQueueCredit && len(in.contenders) > 0 && in.contenders[0].waiting {
		w := in.contenders[0]
		w.waiting = false
		in.held++
		w.ready <- struct{}{}
	}
}

// disable lets all further objects pass ungated (the subscription is gone).
func (in *inbound) disable() { in.once.Do(func() { close(in.disabled) }) }

// inUse is the number of credits currently held.
func (in *inbound) inUse() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.held
}

// rawReceiveStream is what guardedStream needs of *quic.ReceiveStream (an
// interface so tests can feed it crafted bytes in arbitrary chunks).
type rawReceiveStream interface {
	Read([]byte) (int, error)
	CancelRead(quic.StreamErrorCode)
	StreamID() quic.StreamID
}

// guardedStream wraps an incoming data stream. It parses the framing ahead
// of the library and:
//   - stops the stream before the library sees a payload length above
//     MaxObjectSize (bug #3) or non-empty extension headers (bug #1);
//   - holds back the final byte of each object until the subscription has
//     credit, so the library never pushes into a full RemoteTrack channel
//     (bug #2) — the wait propagates to QUIC flow control instead.
//
// Bytes are read straight into the caller's buffer; only when it has to stop
// early (no credit, refusal) does it keep the unparsed rest in stash.
type guardedStream struct {
	s    rawReceiveStream
	sess *Session
	p    *frameParser
	in   *inbound // nil until the header is known / for unknown aliases

	pending    []byte // read from s, not yet parsed nor returned (aliases stash)
	stash      []byte
	readErr    error // error from the underlying stream, after pending drains
	guardErr   error // refusal; returned once the bytes before it are returned
	needCredit bool  // the next byte completes an object that has no credit yet
	waiter     creditWaiter
	counted    uint64
}

func newGuardedStream(s rawReceiveStream, sess *Session) *guardedStream {
	return &guardedStream{
		s:      s,
		sess:   sess,
		p:      newFrameParser(uint64(sess.cfg.MaxObjectSize)),
		waiter: creditWaiter{id: uint64(s.StreamID())},
	}
}

// Stop is never called by v0.5.0 on a receive stream; a stopped stream
// leaves the credit gate at its next Read, which the stop makes fail.
func (g *guardedStream) Stop(code uint32) { g.s.CancelRead(quic.StreamErrorCode(code)) }

func (g *guardedStream) StreamID() uint64 { return uint64(g.s.StreamID()) }

// leaveGate ends the stream's contention for credit (see inbound). Only
// the stream's own goroutine sets waiter.contending, so it reads it
// unlocked and skips the gate's lock on reads made while not contending.
func (g *guardedStream) leaveGate() {
	if g.in != nil && g.waiter.contending {
		g.in.leave(&g.waiter)
	}
}

func (g *guardedStream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if g.needCredit {
		// Everything returned before has been consumed by the library (it
		// only reads when its buffer is empty), so waiting here cannot hold
		// back an object the credit holder needs.
		if !g.in.acquire(g.sess.ctx, &g.waiter) {
			return 0, ErrSessionClosed
		}
		g.needCredit = false
		g.p.grant()
	}
	var src []byte
	fromPending := len(g.pending) > 0
	if fromPending {
		src = g.pending
		if len(src) > len(p) {
			src = src[:len(p)]
		}
	} else {
		// Nothing buffered: stop contending before a read that may block.
		g.leaveGate()
		if g.guardErr != nil {
			return 0, g.guardErr
		}
		if g.readErr != nil {
			return 0, g.readErr
		}
		n, err := g.s.Read(p)
		g.readErr = err
		if n == 0 {
			return 0, err
		}
		src = p[:n]
	}
	out := 0
loop:
	for out < len(src) {
		n, ev, err := g.p.feed(src[out:])
		if fromPending {
			copy(p[out:], src[out:out+n])
		}
		out += n
		if err != nil {
			g.refuse(err)
			break
		}
		switch ev {
		case evHeader:
			if !g.p.isFetch() {
				g.in = g.sess.inboundFor(g.p.Identifier)
			}
		case evObjectPending:
			if g.in == nil || g.in.tryAcquire(&g.waiter) {
				g.p.grant()
				continue
			}
			if out > 0 {
				g.needCredit = true
				break loop
			}
			if !g.in.acquire(g.sess.ctx, &g.waiter) {
				return 0, ErrSessionClosed
			}
			g.p.grant()
		}
	}
	// Keep what was read but not parsed.
	switch {
	case g.guardErr != nil:
		g.pending = nil
	case fromPending:
		g.pending = g.pending[out:]
	case out < len(src):
		g.stash = append(g.stash[:0], src[out:]...)
		g.pending = g.stash
	}
	if g.in != nil {
		g.countObjects()
	}
	if out == 0 {
		if g.guardErr != nil {
			return 0, g.guardErr
		}
		if len(g.pending) == 0 && g.readErr != nil {
			return 0, g.readErr
		}
	}
	return out, nil
}

// countObjects publishes the parser's object count to the inbound counters.
func (g *guardedStream) countObjects() {
	// wireObjects is shared by all streams of the alias; add the delta.
	if d := g.p.Objects - g.counted; d > 0 {
		g.in.wireObjects.Add(d)
		g.counted = g.p.Objects
	}
}

func (g *guardedStream) refuse(err error) {
	g.guardErr = err
	code := uint32(stopCodeBadFraming)
	if errors.Is(err, ErrObjectTooLarge) {
		code = stopCodeObjectTooLarge
		g.sess.stats.oversize.Add(1)
		if g.in != nil {
			g.in.oversize.Add(1)
		}
	} else {
		g.sess.stats.streamsRefused.Add(1)
	}
	g.s.CancelRead(quic.StreamErrorCode(code))
	g.sess.cfg.Logger.Warn("moq: refused incoming data stream", "stream", g.s.StreamID(), "err", err)
}
