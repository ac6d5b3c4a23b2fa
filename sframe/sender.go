package sframe

import (
	"fmt"
	"math"
	"sync/atomic"
)

// A Sender encrypts with one KID's key and owns that key's counter, so every
// (KID, CTR) pair it produces is unique (RFC 9605 §4.3). It is safe for
// concurrent use. A base key given to a Sender must not be used for
// encryption by anyone else, nor for decryption by this party (§4.4.1).
type Sender struct {
	key    *key
	next   atomic.Uint64 // next CTR to use
	blocks atomic.Uint64 // AES blocks processed, against MaxBlocks
	limit  uint64        // first CTR that may not be used
	// Senders of different tracks are often sealed on different cores;
	// padding to 128 bytes (an allocation size class, so 128-byte aligned)
	// keeps two Senders' counters off one cache line pair.
	_ [128 - 32]byte
}

// SenderOption configures a Sender.
type SenderOption func(*Sender)

// WithCounter starts the sender's counter at ctr instead of 0, for example
// to resume a key after a restart without reusing counter values. Counters
// at or above MaxCounter are refused.
func WithCounter(ctr uint64) SenderOption { return func(s *Sender) { s.next.Store(ctr) } }

// WithCounterLimit makes the sender refuse to use counters at or above
// limit, for example to keep headers short or to force an early key change.
// The default, and the largest limit allowed, is MaxCounter.
func WithCounterLimit(limit uint64) SenderOption {
	return func(s *Sender) { s.limit = min(limit, MaxCounter) }
}

// MaxCounter is the first counter value a Sender never uses. The counter is
// taken with one atomic add, which may overshoot the limit by the number of
// callers racing at that moment; the 2^32 values of headroom above it keep
// that overshoot from ever wrapping around to a counter already used.
const MaxCounter = math.MaxUint64 - 1<<32 + 1

// NewSender derives the key and salt for kid from baseKey and returns a
// Sender whose counter starts at 0.
func NewSender(suite CipherSuite, kid uint64, baseKey []byte, opts ...SenderOption) (*Sender, error) {
	k, err := newKey(suite, kid, baseKey)
	if err != nil {
		return nil, err
	}
	s := &Sender{key: k, limit: MaxCounter}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// KID returns the sender's key ID.
func (s *Sender) KID() uint64 { return s.key.kid }

// Suite returns the sender's cipher suite.
func (s *Sender) Suite() CipherSuite { return s.key.suite }

// Counter returns the next counter value the sender will use; at or past
// its limit once exhausted.
func (s *Sender) Counter() uint64 { return min(s.next.Load(), s.limit) }

// Overhead returns the most bytes Seal adds to a plaintext: the longest
// header this sender can still produce plus the tag.
func (s *Sender) Overhead() int {
	return HeaderLen(s.key.kid, s.limit-1) + s.key.tag
}

// Seal encrypts plaintext with the next counter, authenticating the header
// and metadata, and appends the SFrame ciphertext (header || ciphertext ||
// tag) to dst. To encrypt in place, pass plaintext[:0] as dst with room for
// Overhead more bytes; otherwise dst's spare capacity must not overlap
// plaintext. It returns ErrCounterExhausted once the counter or the key's
// usage limit (MaxBlocks) is reached: switch to a new KID.
func (s *Sender) Seal(dst, metadata, plaintext []byte) ([]byte, error) {
	if uint64(len(plaintext)) > maxPlaintext {
		return nil, ErrTooLarge
	}
	// Load before Add: refused calls must not creep the total towards
	// wrapping around.
	blocks := uint64(len(plaintext)+15)/16 + 1
	if s.blocks.Load() > MaxBlocks || s.blocks.Add(blocks) > MaxBlocks {
		return nil, fmt.Errorf("%w: key used for %d blocks", ErrCounterExhausted, uint64(MaxBlocks))
	}
	ctr, err := s.reserve()
	if err != nil {
		return nil, err
	}
	return s.key.seal(dst, ctr, metadata, plaintext)
}

// reserve takes the next counter value. Refused callers still advance the
// counter, but never by 2^32 (see MaxCounter), so it cannot wrap.
func (s *Sender) reserve() (uint64, error) {
	if s.next.Load() >= s.limit { // keep a refused sender from creeping further
		return 0, fmt.Errorf("%w: counter reached %d", ErrCounterExhausted, s.limit)
	}
	ctr := s.next.Add(1) - 1
	if ctr >= s.limit {
		return 0, fmt.Errorf("%w: counter reached %d", ErrCounterExhausted, s.limit)
	}
	return ctr, nil
}
