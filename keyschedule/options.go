package keyschedule

import (
	"fmt"
	"time"

	"github.com/moqsframe/moqsframe/sframe"
)

// Default policy values. See docs/keyschedule.md for the reasoning.
const (
	// DefaultGracePeriod is how long a superseded epoch stays decryptable.
	DefaultGracePeriod = 10 * time.Second

	// DefaultMaxContext is the largest context value a sender uses and a
	// receiver accepts. Receivers derive keys on demand from the KID before
	// authenticating anything, so the bound also limits how many keys an
	// attacker can make a receiver derive and cache per epoch and sender.
	DefaultMaxContext = 255

	// DefaultRotateAfterBlocks is the per-key AES block budget after which a
	// sender moves to a new context: half of sframe.MaxBlocks, so that
	// concurrent in-flight reservations can never reach sframe's hard limit.
	DefaultRotateAfterBlocks = sframe.MaxBlocks / 2

	// DefaultRotateAfterObjects is the per-key object budget after which a
	// sender moves to a new context. It keeps CTR within 4 bytes.
	DefaultRotateAfterObjects = 1 << 32
)

// An Option configures a Schedule.
type Option func(*config) error

type config struct {
	epochBits   uint
	grace       time.Duration
	maxContext  uint64
	rotObjects  uint64
	rotBlocks   uint64
	replay      int
	replaySet   bool
	now         func() time.Time
	coordinated bool
	quorum      Quorum
	timeout     time.Duration
	rekey       func(RekeyRequest)
}

func defaultConfig() config {
	return config{
		epochBits:  DefaultEpochBits,
		grace:      DefaultGracePeriod,
		maxContext: DefaultMaxContext,
		rotObjects: DefaultRotateAfterObjects,
		rotBlocks:  DefaultRotateAfterBlocks,
		now:        time.Now,
	}
}

// WithEpochBits sets E, the number of low KID bits carrying the epoch
// (default DefaultEpochBits, at most MaxEpochBits). All members of a group
// must use the same E.
func WithEpochBits(e uint) Option {
	return func(c *config) error {
		if e > MaxEpochBits {
			return fmt.Errorf("%w: epoch bits %d > %d", ErrInvalidConfig, e, MaxEpochBits)
		}
		c.epochBits = e
		return nil
	}
}

// WithGracePeriod sets how long an epoch stays decryptable after a newer
// one is installed (default DefaultGracePeriod). In coordinated mode the
// roll-over timeout is added, since peers may keep sending with the old
// epoch that long. Retirement happens on Install and Tick.
func WithGracePeriod(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: negative grace period", ErrInvalidConfig)
		}
		c.grace = d
		return nil
	}
}

// WithMaxContext sets the largest context value used for sending and
// accepted for receiving (default DefaultMaxContext). It is further capped
// per epoch by the KID layout (64-S-E bits). All members should agree.
func WithMaxContext(n uint64) Option {
	return func(c *config) error { c.maxContext = n; return nil }
}

// WithRotateAfter sets how many objects one key (one KID) encrypts before
// the sender moves to a fresh context value (default
// DefaultRotateAfterObjects). Mostly useful to exercise rotation in tests.
func WithRotateAfter(objects uint64) Option {
	return func(c *config) error {
		if objects == 0 {
			return fmt.Errorf("%w: zero object budget", ErrInvalidConfig)
		}
		c.rotObjects = objects
		return nil
	}
}

// WithRotateAfterBlocks sets the per-key budget in 16-byte AES blocks (each
// object costs ceil(len/16)+1, as sframe counts them) before the sender
// moves to a fresh context (default DefaultRotateAfterBlocks). Values above
// the default are lowered to it.
func WithRotateAfterBlocks(blocks uint64) Option {
	return func(c *config) error {
		if blocks == 0 {
			return fmt.Errorf("%w: zero block budget", ErrInvalidConfig)
		}
		c.rotBlocks = min(blocks, DefaultRotateAfterBlocks)
		return nil
	}
}

// WithReplayWindow sets the per-KID replay window of the epoch receivers
// (see sframe.WithReplayWindow; default sframe.DefaultReplayWindow).
func WithReplayWindow(n int) Option {
	return func(c *config) error { c.replay, c.replaySet = n, true; return nil }
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidConfig)
		}
		c.now = now
		return nil
	}
}

// WithRekeyHandler registers f to be told when the schedule wants a new
// epoch: once per epoch when its first key reaches its usage budget, and
// once when the epoch runs out of context values. f runs on the sending
// goroutine and must not block or call back into the Schedule's Seal;
// typically it asks the MLS layer for a Commit.
func WithRekeyHandler(f func(RekeyRequest)) Option {
	return func(c *config) error { c.rekey = f; return nil }
}

// WithCoordinatedRollover makes the sender keep encrypting with its current
// epoch after a newer one is installed, until quorum members (counting
// itself) have acknowledged holding the newer epoch (Acknowledge), or
// timeout has passed since the current epoch was first superseded.
// Decryption keys of new epochs are usable at once either way.
func WithCoordinatedRollover(q Quorum, timeout time.Duration) Option {
	return func(c *config) error {
		if q == nil || timeout <= 0 {
			return fmt.Errorf("%w: coordinated roll-over needs a quorum and a positive timeout", ErrInvalidConfig)
		}
		c.coordinated, c.quorum, c.timeout = true, q, timeout
		return nil
	}
}

// A Quorum returns how many members, the local one included, must hold a
// new epoch before the sender switches to it, given the epoch's member
// count. Results above members are treated as members.
type Quorum func(members int) int

// QuorumAll requires every member.
func QuorumAll() Quorum { return func(n int) int { return n } }

// QuorumMajority requires more than half of the members.
func QuorumMajority() Quorum { return func(n int) int { return n/2 + 1 } }

// QuorumAtLeast requires k members (or all, if fewer).
func QuorumAtLeast(k int) Quorum { return func(n int) int { return min(k, n) } }

// QuorumFraction requires at least num/den of the members, rounded up.
func QuorumFraction(num, den int) Quorum {
	return func(n int) int {
		if den <= 0 {
			return n
		}
		return (n*num + den - 1) / den
	}
}

// RekeyReason says why a RekeyRequest was made.
type RekeyReason int

const (
	// RekeyUsage: a key of the epoch reached its usage budget and the
	// sender moved to a new context value. Sending continues.
	RekeyUsage RekeyReason = iota + 1
	// RekeyContextsExhausted: no context value is left in the epoch.
	// Seal fails with ErrContextExhausted until a new epoch is installed.
	RekeyContextsExhausted
)

func (r RekeyReason) String() string {
	switch r {
	case RekeyUsage:
		return "usage"
	case RekeyContextsExhausted:
		return "contexts-exhausted"
	}
	return fmt.Sprintf("RekeyReason(%d)", int(r))
}

// A RekeyRequest asks the application for a new epoch.
type RekeyRequest struct {
	Epoch  uint64 // the epoch whose keys are wearing out
	Reason RekeyReason
}
