package sidecar

import (
	"context"
	"sync"
	"time"

	"github.com/moqsframe/moqsframe/moq"
)

// ReconnectBuffer bounds what an encrypting sidecar keeps of each track so
// that a relay outage loses nothing: every sealed object is kept for
// MaxAge (and within MaxBytes per track, oldest evicted first), and after
// the relay session is lost the objects that may not have reached the
// relay are published again once the relay subscribes on the new session.
// Receivers drop the copies they already had (SFrame replay protection)
// and count them as duplicates.
type ReconnectBuffer struct {
	MaxAge   time.Duration // 0: DefaultReconnectBuffer
	MaxBytes int           // per track; 0: DefaultReconnectBufferBytes
}

// Defaults of ReconnectBuffer: 10 s covers a relay restart of a few
// seconds plus the time to notice the old session died (the MoQ idle
// timeout); 64 MiB is 10 s of 50 Mbit/s.
const (
	DefaultReconnectBuffer      = 10 * time.Second
	DefaultReconnectBufferBytes = 64 << 20
)

// backlog is one published track's reconnect buffer in front of its
// moq.Publisher.
//
// While the session is up (live), objects are forwarded at once and kept.
// When the session is lost, the backlog holds: objects are only kept, and
// the objects written since replayFrom (the session may have been dead
// that long before it was noticed) are the ones to publish again. When
// the relay subscribes on a new session, they are forwarded in order
// before any newer object. An object evicted while held, written after
// replayFrom, has not reached the relay: it is counted unpublished.
type backlog struct {
	pub         *moq.Publisher
	cfg         ReconnectBuffer
	now         func() time.Time
	unpublished func()

	mu           sync.Mutex
	ring         []kept // oldest first, from head
	head         int
	bytes        int
	holding      bool
	replayFrom   time.Time
	subscribedAt time.Time // last live write the relay was subscribed for
	watched      bool      // the relay was subscribed during the suspect span
}

type kept struct {
	at time.Time
	o  moq.Object
}

func newBacklog(pub *moq.Publisher, cfg ReconnectBuffer, now func() time.Time, unpublished func()) *backlog {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultReconnectBuffer
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultReconnectBufferBytes
	}
	return &backlog{pub: pub, cfg: cfg, now: now, unpublished: unpublished}
}

// write keeps o (the backlog owns o.Payload from now on) and, while live,
// forwards it to the publisher, which shares the payload read-only.
func (b *backlog) write(o moq.Object) error {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ring = append(b.ring, kept{at: now, o: o})
	b.bytes += len(o.Payload)
	b.evict(now)
	if b.holding {
		return nil
	}
	if b.pub.Subscribers() > 0 {
		b.subscribedAt = now
	}
	return b.pub.Forward(o)
}

// evict drops the oldest objects beyond the age and byte bounds. The
// caller holds mu.
func (b *backlog) evict(now time.Time) {
	for b.head < len(b.ring) {
		k := b.ring[b.head]
		if now.Sub(k.at) <= b.cfg.MaxAge && b.bytes <= b.cfg.MaxBytes {
			break
		}
		if b.holding && b.watched && !k.at.Before(b.replayFrom) {
			b.unpublished()
		}
		b.bytes -= len(k.o.Payload)
		b.ring[b.head] = kept{}
		b.head++
	}
	// Compact once the dead prefix is as large as the live part, so the
	// ring's memory stays proportional to what it keeps.
	if b.head > 0 && b.head >= len(b.ring)-b.head {
		n := copy(b.ring, b.ring[b.head:])
		clear(b.ring[n:])
		b.ring = b.ring[:n]
		b.head = 0
	}
}

// lost is called when the relay session ended after it had been up; the
// peer may have been gone for up to margin before that was noticed.
func (b *backlog) lost(margin time.Duration) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.holding {
		return
	}
	b.holding = true
	b.replayFrom = now.Add(-margin)
	b.watched = !b.subscribedAt.Before(b.replayFrom)
}

// resume waits (until ctx ends) for the relay to subscribe on a new
// session, then publishes the held objects and goes live.
func (b *backlog) resume(ctx context.Context) {
	b.mu.Lock()
	holding := b.holding
	b.mu.Unlock()
	if !holding {
		return
	}
	if err := b.pub.WaitSubscribers(ctx, 1); err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.holding {
		return
	}
	b.evict(b.now())
	for _, k := range b.ring[b.head:] {
		if !k.at.Before(b.replayFrom) {
			_ = b.pub.Forward(k.o)
		}
	}
	b.holding = false
	b.subscribedAt = b.now()
}
