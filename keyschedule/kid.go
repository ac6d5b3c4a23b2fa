package keyschedule

import (
	"fmt"
	"math/bits"
)

// DefaultEpochBits is the default E: the number of low KID bits carrying the
// epoch, so at most 1<<E epochs can be decryptable at once. See
// docs/keyschedule.md for the choice.
const DefaultEpochBits = 4

// MaxEpochBits bounds E. Every installed epoch costs one slot of a 1<<E
// table that is copied on each Install; more than 256 concurrently
// decryptable epochs has no use.
const MaxEpochBits = 8

// IndexBits returns S, the smallest value with groupSize <= 1<<S (RFC 9605
// §5.2): the number of KID bits carrying the sender's leaf index. It returns
// 0 for groupSize <= 1.
func IndexBits(groupSize uint64) uint {
	if groupSize <= 1 {
		return 0
	}
	return uint(bits.Len64(groupSize - 1))
}

// Layout is the KID layout of one epoch: E epoch bits, S index bits and the
// remaining 64-S-E bits of context.
type Layout struct {
	EpochBits uint // E
	IndexBits uint // S
}

// NewLayout returns the layout for a group of groupSize leaves with E =
// epochBits, or ErrInvalidEpoch if S+E exceeds 64 or groupSize is 0.
func NewLayout(groupSize uint64, epochBits uint) (Layout, error) {
	if groupSize == 0 {
		return Layout{}, fmt.Errorf("%w: group size 0", ErrInvalidEpoch)
	}
	l := Layout{EpochBits: epochBits, IndexBits: IndexBits(groupSize)}
	if l.EpochBits+l.IndexBits > 64 {
		return Layout{}, fmt.Errorf("%w: %d index bits and %d epoch bits exceed 64", ErrInvalidEpoch, l.IndexBits, l.EpochBits)
	}
	return l, nil
}

// ContextBits returns 64-S-E, the bits left for the context value.
func (l Layout) ContextBits() uint { return 64 - l.IndexBits - l.EpochBits }

// MaxContext returns the largest context value the layout can carry.
func (l Layout) MaxContext() uint64 {
	cb := l.ContextBits()
	if cb == 0 {
		return 0
	}
	return 1<<cb - 1 // cb <= 64; 1<<64 is 0 in Go, and 0-1 is MaxUint64
}

// KID returns (context << (S+E)) + (index << E) + (epoch mod 2^E). It returns
// ErrContextRange if context does not fit and ErrInvalidEpoch if index does
// not fit in S bits.
func (l Layout) KID(context, index, epoch uint64) (uint64, error) {
	if context > l.MaxContext() {
		return 0, fmt.Errorf("%w: context %d needs more than %d bits", ErrContextRange, context, l.ContextBits())
	}
	if index>>l.IndexBits != 0 {
		return 0, fmt.Errorf("%w: index %d needs more than %d bits", ErrInvalidEpoch, index, l.IndexBits)
	}
	return l.kid(context, index, epoch), nil
}

// kid composes a KID from values already known to fit. Shifts by 64 yield 0
// in Go, which is what an empty field means.
func (l Layout) kid(context, index, epoch uint64) uint64 {
	return context<<(l.IndexBits+l.EpochBits) | index<<l.EpochBits | epoch&lowMask(l.EpochBits)
}

// Split decomposes a KID into its context, index and low epoch bits.
func (l Layout) Split(kid uint64) (context, index, epochLow uint64) {
	return kid >> (l.IndexBits + l.EpochBits), kid >> l.EpochBits & lowMask(l.IndexBits), kid & lowMask(l.EpochBits)
}

func lowMask(n uint) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<n - 1
}
