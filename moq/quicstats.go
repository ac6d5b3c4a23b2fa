package moq

import (
	"context"
	"sync/atomic"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/logging"
)

// quicCounters are one connection's QUIC-level losses, kept by a
// connection tracer that sets only the two loss callbacks: quic-go calls
// nothing per packet for it, so the hot path costs the same as untraced.
type quicCounters struct {
	lost    atomic.Uint64 // our packets declared lost (RFC 9002 §6.1)
	dropped atomic.Uint64 // received packets quic-go discarded unprocessed
}

// quicCountersKey is the context key under which a connection's
// *quicCounters travel from Dial or the listener's ConnContext to the
// tracer quic-go creates for it.
type quicCountersKey struct{}

// withQUICCounters returns ctx carrying a new connection's counters.
func withQUICCounters(ctx context.Context) context.Context {
	return context.WithValue(ctx, quicCountersKey{}, new(quicCounters))
}

// quicCountersOf returns the counters the connection's context carries, or
// a fresh set for a connection set up without them, so callers need no
// nil check.
func quicCountersOf(ctx context.Context) *quicCounters {
	if c, ok := ctx.Value(quicCountersKey{}).(*quicCounters); ok {
		return c
	}
	return new(quicCounters)
}

// traceLosses is the quic.Config.Tracer of every MoQ connection.
func traceLosses(ctx context.Context, _ logging.Perspective, _ quic.ConnectionID) *logging.ConnectionTracer {
	c, ok := ctx.Value(quicCountersKey{}).(*quicCounters)
	if !ok {
		return nil
	}
	return &logging.ConnectionTracer{
		LostPacket: func(logging.EncryptionLevel, logging.PacketNumber, logging.PacketLossReason) {
			c.lost.Add(1)
		},
		DroppedPacket: func(logging.PacketType, logging.PacketNumber, logging.ByteCount, logging.PacketDropReason) {
			c.dropped.Add(1)
		},
	}
}
