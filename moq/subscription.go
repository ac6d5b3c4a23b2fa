package moq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mengelbart/moqtransport"
)

// SubscriptionStats are a Subscription's counters.
type SubscriptionStats struct {
	Objects uint64 // objects received from the library (delivered or queued)
	Bytes   uint64
	// Dropped counts objects that completed on the wire for this track but
	// were never delivered by moqtransport (its silent channel overflow,
	// bug #2). The credit gate is there to keep it at 0; it is measured, not
	// assumed.
	Dropped uint64
	// Oversize counts streams of this track stopped for an object above
	// MaxObjectSize.
	Oversize uint64
}

// Subscription receives one track. A dedicated goroutine moves objects out
// of moqtransport's RemoteTrack as soon as they arrive into a queue of
// Config.SubscriptionQueue objects; when that queue is full, receiving
// pauses (QUIC flow control) rather than dropping. Objects of different
// subgroup streams may interleave (v0.5.0 bug #5); within one subgroup they
// arrive in order. Read it, or Close it: an unread Subscription eventually
// stalls its connection.
type Subscription struct {
	sess      *Session
	rt        *moqtransport.RemoteTrack
	in        *inbound
	alias     uint64
	gated     bool // in belongs to the session's map under alias
	namespace []string
	track     string

	queue  chan Object
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // reader goroutine exited; err is set
	err    error

	stopOnce sync.Once
	stopErr  error

	objects, bytes atomic.Uint64
	endedByPeer    atomic.Bool // SUBSCRIBE_DONE received: do not UNSUBSCRIBE
}

// Subscribe sends SUBSCRIBE for (namespace, track) and waits for
// SUBSCRIBE_OK. A refusal for an unknown track matches ErrUnknownTrack, an
// unauthorized one ErrUnauthorized.
func (s *Session) Subscribe(ctx context.Context, namespace []string, track string) (*Subscription, error) {
	if s.closed() {
		return nil, ErrSessionClosed
	}
	rt, err := s.subscribeDetached(ctx, namespace, track)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("moq: subscribe %q/%q: no answer from the publisher: %w", namespace, track, err)
		}
		if s.closed() {
			return nil, ErrSessionClosed
		}
		var pe moqtransport.ProtocolError
		if errors.As(err, &pe) && pe.Code() == moqtransport.ErrorCodeSubscribeTrackDoesNotExist {
			return nil, fmt.Errorf("%w: %q/%q: %v", ErrUnknownTrack, namespace, track, err)
		}
		if errors.As(err, &pe) && pe.Code() == moqtransport.ErrorCodeSubscribeUnauthorized {
			return nil, fmt.Errorf("%w: subscribe %q/%q refused: %v", ErrUnauthorized, namespace, track, err)
		}
		return nil, fmt.Errorf("moq: subscribe %q/%q: %w", namespace, track, err)
	}
	in, alias := s.inboundForRequest(rt.RequestID())
	gated := in != nil
	if in == nil {
		// Cannot happen unless the library changes its framing; run ungated.
		in = newInbound()
		in.disable()
	}
	sctx, cancel := context.WithCancel(s.ctx)
	sub := &Subscription{
		sess:      s,
		rt:        rt,
		in:        in,
		alias:     alias,
		gated:     gated,
		namespace: append([]string(nil), namespace...),
		track:     track,
		queue:     make(chan Object, s.cfg.SubscriptionQueue),
		ctx:       sctx,
		cancel:    cancel,
		done:      make(chan struct{}),
	}
	s.mu.Lock()
	if s.shut || s.closed() {
		s.mu.Unlock()
		cancel()
		_ = rt.Close()
		return nil, ErrSessionClosed
	}
	s.subscriptions[sub] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		sub.read()
	}()
	return sub, nil
}

// subscribeDetached runs the library's Subscribe with a context that only
// the session's end cancels. If v0.5.0's Subscribe gives up on a context, it
// forgets the request, and the SUBSCRIBE_OK arriving later stops its control
// loop ("unknown request ID"). So the caller's ctx only stops waiting; a late
// SUBSCRIBE_OK is answered with UNSUBSCRIBE by the detached goroutine.
func (s *Session) subscribeDetached(ctx context.Context, namespace []string, track string) (*moqtransport.RemoteTrack, error) {
	type result struct {
		rt  *moqtransport.RemoteTrack
		err error
	}
	done := make(chan result) // unbuffered: a result is either taken or abandoned
	abandoned := make(chan struct{})
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		return nil, ErrSessionClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		rt, err := s.ms.Subscribe(s.ctx, namespace, track)
		select {
		case done <- result{rt, err}:
		case <-abandoned:
			if err == nil {
				if s.ctx.Err() == nil {
					_ = rt.Close()
				}
				s.forgetRequest(rt.RequestID())
			}
		}
	}()
	select {
	case r := <-done:
		return r.rt, r.err
	case <-ctx.Done():
		close(abandoned)
		return nil, ctx.Err()
	}
}

// read is the dedicated goroutine that keeps the library's channel empty.
func (sub *Subscription) read() {
	defer close(sub.done)
	defer sub.in.disable()
	for {
		o, err := sub.rt.ReadObject(sub.ctx)
		if o != nil {
			if !sub.deliver(o) {
				sub.err = sub.stopReason()
				return
			}
		}
		if err == nil {
			continue
		}
		if sub.ctx.Err() != nil {
			sub.err = sub.stopReason()
			return
		}
		// The publisher ended the track (SUBSCRIBE_DONE). v0.5.0 may report
		// that as context.Canceled alongside a buffered object, or as
		// *ErrSubscribeDone.
		sub.endedByPeer.Store(true)
		reason := sub.drainAfterDone(err)
		sub.err = fmt.Errorf("%w: %v", ErrSubscriptionEnded, reason)
		return
	}
}

// drainAfterDone: SUBSCRIBE_DONE travels on the control stream and can
// overtake the last objects on data streams; after it, v0.5.0's ReadObject
// picks randomly between "done" and a buffered object. Keep reading until
// nothing has arrived for a short grace period.
func (sub *Subscription) drainAfterDone(reason error) error {
	const (
		poll  = 5 * time.Millisecond
		quiet = 40 // polls without an object: 200 ms
	)
	misses := 0
	for misses < quiet {
		o, err := sub.rt.ReadObject(sub.ctx)
		if sub.ctx.Err() != nil {
			return reason
		}
		var done *moqtransport.ErrSubscribeDone
		if errors.As(err, &done) {
			reason = done
		}
		if o != nil {
			misses = 0
			if !sub.deliver(o) {
				return reason
			}
			continue
		}
		misses++
		time.Sleep(poll)
	}
	return reason
}

func (sub *Subscription) deliver(o *moqtransport.Object) bool {
	sub.in.release()
	sub.objects.Add(1)
	sub.bytes.Add(uint64(len(o.Payload)))
	obj := Object{GroupID: o.GroupID, SubgroupID: o.SubGroupID, ObjectID: o.ObjectID, Payload: o.Payload}
	select {
	case sub.queue <- obj:
		return true
	case <-sub.ctx.Done():
		return false
	}
}

func (sub *Subscription) stopReason() error {
	sub.sess.mu.Lock()
	stopErr := sub.stopErr
	sub.sess.mu.Unlock()
	if stopErr != nil {
		return stopErr
	}
	if sub.sess.closed() {
		return ErrSessionClosed
	}
	return ErrSubscriptionEnded
}

// ReadObject returns the next object. After the subscription ends it
// returns the queued objects first, then an error matching
// ErrSubscriptionEnded or ErrSessionClosed.
func (sub *Subscription) ReadObject(ctx context.Context) (Object, error) {
	select {
	case o := <-sub.queue:
		return o, nil
	case <-ctx.Done():
		return Object{}, ctx.Err()
	case <-sub.done:
		select {
		case o := <-sub.queue:
			return o, nil
		default:
			return Object{}, sub.err
		}
	}
}

// Namespace returns the subscribed track namespace.
func (sub *Subscription) Namespace() []string { return append([]string(nil), sub.namespace...) }

// Track returns the subscribed track name.
func (sub *Subscription) Track() string { return sub.track }

// Done is closed when no more objects will be queued.
func (sub *Subscription) Done() <-chan struct{} { return sub.done }

// Stats returns the counters.
func (sub *Subscription) Stats() SubscriptionStats {
	got := sub.objects.Load()
	wire := sub.in.wireObjects.Load()
	held := uint64(sub.in.inUse())
	var dropped uint64
	if wire > got+held {
		dropped = wire - got - held
	}
	return SubscriptionStats{
		Objects:  got,
		Bytes:    sub.bytes.Load(),
		Dropped:  dropped,
		Oversize: sub.in.oversize.Load(),
	}
}

// Close sends UNSUBSCRIBE and stops the reader goroutine. Objects still
// queued are discarded.
func (sub *Subscription) Close() error {
	var err error
	sub.stopOnce.Do(func() {
		// UNSUBSCRIBE after the publisher's SUBSCRIBE_DONE would name a
		// request ID a v0.5.0 peer has forgotten, which stops its control
		// loop (our own controlStream drops such messages).
		if !sub.sess.closed() && !sub.endedByPeer.Load() {
			err = sub.rt.Close()
		}
	})
	sub.stop(ErrSubscriptionEnded)
	if err != nil && sub.sess.closed() {
		err = nil
	}
	return err
}

func (sub *Subscription) stop(reason error) {
	sub.sess.mu.Lock()
	if sub.stopErr == nil {
		sub.stopErr = reason
	}
	delete(sub.sess.subscriptions, sub)
	if sub.gated {
		sub.sess.forgetInboundLocked(sub.rt.RequestID(), sub.alias)
	}
	sub.sess.mu.Unlock()
	sub.cancel()
	sub.in.disable()
	<-sub.done
}
