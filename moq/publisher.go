package moq

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mengelbart/moqtransport"
	"github.com/quic-go/quic-go"
)

// Object is one MoQ object. Payload is opaque (for the relay, usually
// SFrame ciphertext).
type Object struct {
	GroupID    uint64
	SubgroupID uint64
	ObjectID   uint64
	Payload    []byte
}

// PublisherStats are a Publisher's counters, summed over its subscribers.
type PublisherStats struct {
	ObjectsIn  uint64 // WriteObject calls accepted
	BytesIn    uint64
	ObjectsOut uint64 // objects written to subscriber streams
	BytesOut   uint64
	Dropped    uint64 // objects dropped for a full subscriber queue (either bound)
	// DroppedBytes counts the subset of Dropped that hit
	// Config.SubscriberQueueBytes rather than SubscriberQueue.
	DroppedBytes uint64
	// QueuedBytes is the payload currently held for subscribers (queued
	// or being written); PeakQueuedBytes the most any one subscriber held
	// at once (never above Config.SubscriberQueueBytes).
	QueuedBytes     int64
	PeakQueuedBytes int64
	Disconnected    uint64 // subscribers ended for being too slow or failing
	Subscribers     int    // current
}

// Publisher serves one (namespace, track) to any number of subscribers,
// possibly on different sessions (a relay shares one Publisher between all
// downstream sessions). Every subscriber has its own bounded queue and
// writer goroutine, so WriteObject does not write to the network itself.
//
// Streams: one QUIC stream per (group, subgroup). When an object of a newer
// group N is written, the streams of groups before N-1 are closed (FIN); an
// object of a group older than N-1 (reordered input) goes on a stream that
// is closed right after it. Publisher.Close closes all.
type Publisher struct {
	namespace []string
	track     string
	cfg       *Config

	mu      sync.RWMutex
	subs    map[*subscriber]struct{}
	closed  bool
	changed chan struct{} // closed and replaced when subs changes
	// snapshot is a copy of subs for WriteObject, which must not hold mu
	// while it may wait on a full queue (attach runs on a control goroutine).
	snapshot atomic.Pointer[[]*subscriber]
	isDone   atomic.Bool

	objectsIn, bytesIn, objectsOut, bytesOut, dropped, disconnected atomic.Uint64
	droppedBytes                                                    atomic.Uint64
	peakQueued                                                      atomic.Int64
}

// NewPublisher makes a Publisher not bound to a session. Serve it from
// Config.OnSubscribe, or use Session.Publish for the common one-session case.
// cfg supplies MaxObjectSize, SubscriberQueue, SubscriberQueueBytes,
// DropWhenFull, MaxDrops and WriteTimeout.
func NewPublisher(namespace []string, track string, cfg *Config) *Publisher {
	return &Publisher{
		namespace: append([]string(nil), namespace...),
		track:     track,
		cfg:       cfg.withDefaults(),
		subs:      map[*subscriber]struct{}{},
		changed:   make(chan struct{}),
	}
}

// Namespace returns the track namespace.
func (p *Publisher) Namespace() []string { return append([]string(nil), p.namespace...) }

// Track returns the track name.
func (p *Publisher) Track() string { return p.track }

func (p *Publisher) isClosed() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.closed
}

// WriteObject queues an object for every current subscriber. The payload is
// copied, so the caller may reuse its buffer. With no subscriber the object
// is discarded (live semantics: there is no cache). IDs are sent exactly as
// given; callers should keep object IDs increasing within a subgroup.
func (p *Publisher) WriteObject(groupID, subgroupID, objectID uint64, payload []byte) error {
	if len(payload) > p.cfg.MaxObjectSize {
		return &ObjectTooLargeError{Size: uint64(len(payload)), Max: uint64(p.cfg.MaxObjectSize)}
	}
	o := Object{GroupID: groupID, SubgroupID: subgroupID, ObjectID: objectID, Payload: append([]byte(nil), payload...)}
	return p.writeOwned(o)
}

// Forward is WriteObject without the copy: the Publisher takes ownership of
// o.Payload, which the caller must not modify afterwards. Meant for relays
// forwarding objects read from a Subscription.
func (p *Publisher) Forward(o Object) error {
	if len(o.Payload) > p.cfg.MaxObjectSize {
		return &ObjectTooLargeError{Size: uint64(len(o.Payload)), Max: uint64(p.cfg.MaxObjectSize)}
	}
	return p.writeOwned(o)
}

func (p *Publisher) writeOwned(o Object) error {
	if p.isDone.Load() {
		return ErrPublisherClosed
	}
	p.objectsIn.Add(1)
	p.bytesIn.Add(uint64(len(o.Payload)))
	if subs := p.snapshot.Load(); subs != nil {
		for _, sub := range *subs {
			sub.enqueue(o)
		}
	}
	return nil
}

// Subscribers returns the current number of subscribers.
func (p *Publisher) Subscribers() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.subs)
}

// WaitSubscribers blocks until at least n subscribers are attached. Useful
// before publishing one-shot objects (e.g. a Welcome), since objects written
// with no subscriber are discarded.
func (p *Publisher) WaitSubscribers(ctx context.Context, n int) error {
	for {
		p.mu.RLock()
		have, ch, closed := len(p.subs), p.changed, p.closed
		p.mu.RUnlock()
		if closed {
			return ErrPublisherClosed
		}
		if have >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Stats returns the counters.
func (p *Publisher) Stats() PublisherStats {
	st := PublisherStats{
		ObjectsIn:       p.objectsIn.Load(),
		BytesIn:         p.bytesIn.Load(),
		ObjectsOut:      p.objectsOut.Load(),
		BytesOut:        p.bytesOut.Load(),
		Dropped:         p.dropped.Load(),
		DroppedBytes:    p.droppedBytes.Load(),
		Disconnected:    p.disconnected.Load(),
		PeakQueuedBytes: p.peakQueued.Load(),
	}
	p.mu.RLock()
	st.Subscribers = len(p.subs)
	for sub := range p.subs {
		st.QueuedBytes += sub.queuedBytes.Load()
	}
	p.mu.RUnlock()
	return st
}

// Close ends the track: every subscriber's queue is flushed, its streams
// closed and SUBSCRIBE_DONE (track ended) sent. It does not wait for the
// flush; sessions' Close waits for the writer goroutines.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.isDone.Store(true)
	subs := make([]*subscriber, 0, len(p.subs))
	for sub := range p.subs {
		subs = append(subs, sub)
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	for _, sub := range subs {
		sub.finishAfterFlush()
	}
	return nil
}

func (p *Publisher) notifyLocked() {
	subs := make([]*subscriber, 0, len(p.subs))
	for sub := range p.subs {
		subs = append(subs, sub)
	}
	p.snapshot.Store(&subs)
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *Publisher) attach(sess *Session, w *moqtransport.SubscribeResponseWriter) (*subscriber, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrPublisherClosed
	}
	sub := &subscriber{
		pub:     p,
		sess:    sess,
		w:       w,
		queue:   make(chan Object, p.cfg.SubscriberQueue),
		room:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		flush:   make(chan struct{}),
		streams: map[[2]uint64]subgroupStream{},
	}
	p.subs[sub] = struct{}{}
	p.notifyLocked()
	return sub, nil
}

func (p *Publisher) detach(sub *subscriber) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.subs[sub]; ok {
		delete(p.subs, sub)
		p.notifyLocked()
	}
}

// subscriber is one downstream subscription of a Publisher.
type subscriber struct {
	pub       *Publisher
	sess      *Session
	w         *moqtransport.SubscribeResponseWriter
	requestID uint64

	queue     chan Object
	stop      chan struct{} // closed: end now (too slow, failed)
	stopOnce  sync.Once
	stopCode  uint64
	stopWhy   string
	flush     chan struct{} // closed: write what is queued, then end
	flushOnce sync.Once
	drops     atomic.Uint64
	// queuedBytes is the payload of the objects in queue plus the one the
	// writer is sending; room is signalled when it shrinks (for enqueuers
	// that wait, i.e. without DropWhenFull).
	queuedBytes atomic.Int64
	room        chan struct{}

	// writer goroutine only
	streams   map[[2]uint64]subgroupStream
	newest    uint64
	hasNewest bool
	// unflushed counts the objects (and payload bytes) written into
	// coalescing streams since the last flush; they count as out once
	// flushed.
	unflushed, unflushedBytes uint64
}

// subgroupStream is an open subgroup and our stream under it (nil if the
// library opened it some other way: then it writes through).
type subgroupStream struct {
	sg *moqtransport.Subgroup
	st *sendStream
}

// close flushes the stream and closes it (FIN). Only a failed flush is an
// error: what it kept did not reach QUIC.
func (g subgroupStream) close() error {
	if g.st != nil {
		if err := g.st.Flush(); err != nil {
			return err
		}
	}
	_ = g.sg.Close()
	return nil
}

func (s *subscriber) abort(code uint64, why string) {
	s.stopOnce.Do(func() {
		s.stopCode, s.stopWhy = code, why
		if code == moqtransport.ErrorCodeSubscribeDoneTooFarBehind {
			// Counted when decided: the writer may sit in a blocked stream
			// write for up to WriteTimeout before it can send SUBSCRIBE_DONE.
			s.pub.disconnected.Add(1)
		}
		close(s.stop)
	})
}

func (s *subscriber) finishAfterFlush() { s.flushOnce.Do(func() { close(s.flush) }) }

// reserve claims n bytes of the subscriber's byte bound.
func (s *subscriber) reserve(n int64) bool {
	q := s.queuedBytes.Add(n)
	if q > int64(s.pub.cfg.SubscriberQueueBytes) {
		s.queuedBytes.Add(-n)
		return false
	}
	for peak := s.pub.peakQueued.Load(); q > peak && !s.pub.peakQueued.CompareAndSwap(peak, q); {
		peak = s.pub.peakQueued.Load()
	}
	return true
}

// release returns n bytes once the writer is done with an object.
func (s *subscriber) release(n int64) {
	s.queuedBytes.Add(-n)
	if !s.pub.cfg.DropWhenFull {
		select {
		case s.room <- struct{}{}:
		default:
		}
	}
}

// enqueue applies the overflow policy. The queue is full when it holds
// SubscriberQueue objects or one more object would take it above
// SubscriberQueueBytes.
func (s *subscriber) enqueue(o Object) {
	n := int64(len(o.Payload))
	byBytes := !s.reserve(n)
	if !byBytes {
		select {
		case s.queue <- o:
			return
		case <-s.stop:
			s.release(n)
			return
		default:
			s.release(n)
		}
	}
	if s.pub.cfg.DropWhenFull {
		s.drop(byBytes)
		if n := s.drops.Add(1); s.pub.cfg.MaxDrops > 0 && n >= uint64(s.pub.cfg.MaxDrops) {
			s.abort(moqtransport.ErrorCodeSubscribeDoneTooFarBehind, "subscriber too far behind (queue overflow)")
		}
		return
	}
	t := time.NewTimer(s.pub.cfg.WriteTimeout)
	defer t.Stop()
	for {
		if s.reserve(n) {
			select {
			case s.queue <- o:
				return
			case <-s.stop:
			case <-s.sess.ctx.Done():
			case <-t.C:
				s.drop(false)
				s.abort(moqtransport.ErrorCodeSubscribeDoneTooFarBehind, "subscriber too slow (queue full for WriteTimeout)")
			}
			s.release(n)
			return
		}
		select {
		case <-s.room:
		case <-s.stop:
			return
		case <-s.sess.ctx.Done():
			return
		case <-t.C:
			s.drop(true)
			s.abort(moqtransport.ErrorCodeSubscribeDoneTooFarBehind, "subscriber too slow (queue full for WriteTimeout)")
			return
		}
	}
}

func (s *subscriber) drop(byBytes bool) {
	s.pub.dropped.Add(1)
	if byBytes {
		s.pub.droppedBytes.Add(1)
	}
}

// run is the writer goroutine.
func (s *subscriber) run() {
	code, why := moqtransport.ErrorCodeSubscribeDoneTrackEnded, "track ended"
	defer func() { s.finish(code, why) }()
	for {
		select {
		case o := <-s.queue:
			err := s.write(o)
			s.release(int64(len(o.Payload)))
			if err == nil && (len(s.queue) == 0 || s.unflushedBytes >= coalesceLimit) {
				// Idle, or a stream other than the one that just filled
				// may hold objects: nothing waits behind 16 KiB of others.
				err = s.flushStreams()
			}
			if err != nil {
				code, why = s.writeFailure(err)
				return
			}
		case <-s.stop:
			code, why = s.stopCode, s.stopWhy
			return
		case <-s.sess.ctx.Done():
			return
		case <-s.flush:
			for {
				select {
				case o := <-s.queue:
					err := s.write(o)
					s.release(int64(len(o.Payload)))
					if err != nil {
						code, why = s.writeFailure(err)
						return
					}
				default:
					if err := s.flushStreams(); err != nil {
						code, why = s.writeFailure(err)
					}
					return
				}
			}
		}
	}
}

// connectionClosed reports whether err is the error of the whole QUIC
// connection ending, not of one stream. quic-go fails the streams with it
// before it cancels the connection's context, so a writer can see it while
// Session.closed still reports false.
func connectionClosed(err error) bool {
	var (
		app  *quic.ApplicationError
		tr   *quic.TransportError
		idle *quic.IdleTimeoutError
	)
	return errors.As(err, &app) || errors.As(err, &tr) || errors.As(err, &idle)
}

func (s *subscriber) writeFailure(err error) (uint64, string) {
	if errors.Is(err, moqtransport.ErrUnsusbcribed) {
		return moqtransport.ErrorCodeSubscribeDoneSubscriptionEnded, "unsubscribed"
	}
	select {
	case <-s.stop:
		// already ended (and counted) by abort
		return s.stopCode, s.stopWhy
	default:
	}
	if !s.sess.closed() && !connectionClosed(err) {
		s.pub.disconnected.Add(1)
		s.sess.cfg.Logger.Info("moq: ending subscriber after write failure", "remote", s.sess.conn.RemoteAddr().String(), "err", err)
	}
	return moqtransport.ErrorCodeSubscribeDoneInternal, "write failed"
}

func (s *subscriber) write(o Object) error {
	key := [2]uint64{o.GroupID, o.SubgroupID}
	g, ok := s.streams[key]
	if !ok {
		sg, st, err := s.sess.openSubgroup(s.w, o.GroupID, o.SubgroupID)
		if err != nil {
			return err
		}
		g = subgroupStream{sg: sg, st: st}
		s.streams[key] = g
	}
	if _, err := g.sg.WriteObject(o.ObjectID, o.Payload); err != nil {
		return err
	}
	if g.st != nil { // coalescing: counted out once flushed
		s.unflushed++
		s.unflushedBytes += uint64(len(o.Payload))
	} else {
		s.pub.objectsOut.Add(1)
		s.pub.bytesOut.Add(uint64(len(o.Payload)))
	}
	// Keep the newest and the previous group's streams open: input that
	// went through a v0.5.0 receiver interleaves adjacent groups (bug #5),
	// and reopening a stream for a straggler could reorder its subgroup.
	// Closing a stream flushes it first.
	switch {
	case !s.hasNewest || o.GroupID > s.newest:
		s.newest, s.hasNewest = o.GroupID, true
		for k, st := range s.streams {
			if k[0]+1 < o.GroupID {
				if err := st.close(); err != nil {
					return err
				}
				delete(s.streams, k)
			}
		}
	case o.GroupID+1 < s.newest:
		delete(s.streams, key)
		if err := g.close(); err != nil {
			return err
		}
	}
	return nil
}

// flushStreams hands every coalescing stream's kept objects to QUIC; the
// writer calls it whenever its queue is empty.
func (s *subscriber) flushStreams() error {
	for _, g := range s.streams {
		if g.st != nil {
			if err := g.st.Flush(); err != nil {
				return err
			}
		}
	}
	s.pub.objectsOut.Add(s.unflushed)
	s.pub.bytesOut.Add(s.unflushedBytes)
	s.unflushed, s.unflushedBytes = 0, 0
	return nil
}

func (s *subscriber) finish(code uint64, why string) {
	s.abort(code, why) // unblocks enqueuers
	// A normal end flushed already; a subscriber ended for being too slow
	// or failing does not wait to write what its streams kept.
	for k, g := range s.streams {
		if g.st != nil {
			g.st.releasePending()
		}
		_ = g.sg.Close()
		delete(s.streams, k)
	}
	// Sends SUBSCRIBE_DONE and makes the library forget the subscription;
	// under ctlSem so a crossing UNSUBSCRIBE is either handled before or
	// dropped after (see controlStream).
	if s.sess.lockCtl() {
		s.sess.forgetLive(s.requestID)
		_ = s.w.CloseWithError(code, why)
		s.sess.unlockCtl()
	}
	s.pub.detach(s)
}
