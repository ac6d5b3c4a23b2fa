package keyschedule

import (
	"errors"
	"fmt"
	"maps"
	"sync/atomic"

	"github.com/moqsframe/moqsframe/sframe"
)

// A Stream is one outbound stream of the local member: it encrypts with the
// member's key for the current send epoch and the stream's context value.
// When that key reaches its usage budget, the stream moves to a fresh
// context value; when the send epoch changes, it starts again from its base
// context in the new epoch. A Stream is safe for concurrent use, and its
// Seal has the signature a pipeline sealer needs.
//
// Streams of one Schedule that end up on the same context share one
// sframe.Sender, hence one counter: a (key, nonce) pair is never reused.
type Stream struct {
	s    *Schedule
	base uint64
	cur  atomic.Pointer[sendKey]
}

// sendKey is the sending state of one (epoch, context): the sframe.Sender
// and the usage counted against the rotation budget.
type sendKey struct {
	ep      *epochState
	ctx     uint64
	snd     *sframe.Sender
	objects atomic.Uint64
	blocks  atomic.Uint64
	dead    atomic.Bool
	next    *sendKey // successor context once dead; guarded by ep.smu
	// Streams on different cores count on their own sendKeys: padding to
	// 128 bytes (an allocation size class, so aligned) keeps two sendKeys'
	// counters off one cache line pair.
	_ [128 - 56]byte
}

// reserve counts one object of b blocks against the budget and reports
// whether it fits. Counting before checking means racing callers can only
// under-use a key, never over-use it.
func (k *sendKey) reserve(b, maxObjects, maxBlocks uint64) bool {
	return k.objects.Add(1) <= maxObjects && k.blocks.Add(b) <= maxBlocks
}

// Stream returns a sending stream whose first context value in each epoch
// is context. The context must not exceed the configured maximum; whether
// it fits the KID is checked per epoch at Seal time (ErrContextRange).
// Context 0, the shortest KID, is the Schedule's own stream (Schedule.Seal).
func (s *Schedule) Stream(context uint64) (*Stream, error) {
	if context > s.cfg.maxContext {
		return nil, fmt.Errorf("%w: context %d, maximum %d", ErrContextRange, context, s.cfg.maxContext)
	}
	s.mu.Lock()
	if _, ok := (*s.reserved.Load())[context]; !ok {
		m := maps.Clone(*s.reserved.Load())
		m[context] = struct{}{}
		s.reserved.Store(&m)
	}
	s.mu.Unlock()
	return &Stream{s: s, base: context}, nil
}

// Seal encrypts on the Schedule's context-0 stream. See Stream.Seal.
func (s *Schedule) Seal(dst, metadata, plaintext []byte) ([]byte, error) {
	return s.def.Seal(dst, metadata, plaintext)
}

// Overhead returns the most bytes Seal adds to a plaintext.
func (st *Stream) Overhead() int { return st.s.Overhead() }

// maxAttempts bounds how many keys one Seal tries; more than one only
// when keys wear out under it.
const maxAttempts = 8

var errTooLarge = fmt.Errorf("%w", ErrObjectTooLarge)

// Seal encrypts plaintext with the stream's current key and appends the
// SFrame ciphertext to dst, with sframe.Sender.Seal's semantics. It fails
// with ErrNoEpoch before the first Install, ErrContextExhausted when the
// epoch has no fresh context left, and ErrContextRange when the stream's
// context does not fit the epoch's KID layout.
func (st *Stream) Seal(dst, metadata, plaintext []byte) ([]byte, error) {
	b := uint64(len(plaintext)+15)/16 + 1
	if b > st.s.cfg.rotBlocks {
		return nil, errTooLarge
	}
	for range maxAttempts {
		k, err := st.acquire(b)
		if err != nil {
			return nil, err
		}
		out, err := k.snd.Seal(dst, metadata, plaintext)
		if err == nil || !errors.Is(err, sframe.ErrCounterExhausted) {
			return out, err
		}
		// sframe's hard limit: our budget should have moved us first.
		// Nothing was encrypted, so moving on is safe.
		st.s.stats.hardLimit.Add(1)
		k.dead.Store(true)
	}
	return nil, fmt.Errorf("%w: no usable key after %d attempts", ErrContextExhausted, maxAttempts)
}

// acquire is the encrypt-path key lookup: load the snapshot, check the
// stream's cached key against the send epoch, and reserve the object's
// usage. Only a change of epoch or an exhausted key takes the slow path.
func (st *Stream) acquire(b uint64) (*sendKey, error) {
	s := st.s
	snap := s.snap.Load()
	if snap.pending != nil {
		snap = s.maybePromote(snap)
	}
	ep := snap.send
	if ep == nil {
		return nil, ErrNoEpoch
	}
	k := st.cur.Load()
	for range maxAttempts {
		if k == nil || k.ep != ep || k.dead.Load() {
			var err error
			if k, err = st.switchKey(ep, k); err != nil {
				return nil, err
			}
		}
		if k.reserve(b, s.cfg.rotObjects, s.cfg.rotBlocks) {
			return k, nil
		}
		k.dead.Store(true)
	}
	return nil, fmt.Errorf("%w: no usable key after %d attempts", ErrContextExhausted, maxAttempts)
}

// switchKey finds the stream's key in ep: the successor of a worn-out key
// of the same epoch, or else the key of the stream's base context.
func (st *Stream) switchKey(ep *epochState, k *sendKey) (*sendKey, error) {
	s := st.s
	ep.smu.Lock()
	var nk *sendKey
	var err error
	var signal RekeyReason
	if k != nil && k.ep == ep {
		nk, signal, err = ep.successorLocked(s, k)
	} else {
		nk, signal, err = ep.keyForLocked(s, st.base)
	}
	ep.smu.Unlock()
	if signal != 0 && s.cfg.rekey != nil {
		s.cfg.rekey(RekeyRequest{Epoch: ep.num, Reason: signal})
	}
	if err != nil {
		return nil, err
	}
	st.cur.Store(nk)
	return nk, nil
}

// keyForLocked returns the live key for ctx in ep, creating it or moving
// past worn-out ones. The caller holds ep.smu.
func (ep *epochState) keyForLocked(s *Schedule, ctx uint64) (*sendKey, RekeyReason, error) {
	k := ep.byCtx[ctx]
	if k == nil {
		var err error
		if k, err = ep.newSendKeyLocked(s, ctx); err != nil {
			return nil, 0, err
		}
		return k, 0, nil
	}
	if !k.dead.Load() {
		return k, 0, nil
	}
	return ep.successorLocked(s, k)
}

// successorLocked returns the first live key down k's chain of successors,
// allocating a fresh context value at the end of the chain. The caller holds
// ep.smu.
func (ep *epochState) successorLocked(s *Schedule, k *sendKey) (*sendKey, RekeyReason, error) {
	for k.next != nil {
		k = k.next
	}
	if !k.dead.Load() {
		return k, 0, nil
	}
	// The first context value from nextCtx on that is neither used in this
	// epoch nor some stream's base. Only finitely many values are taken,
	// so the loop ends.
	reserved := *s.reserved.Load()
	c, found := ep.nextCtx, false
	for !ep.ctxDone && c <= ep.maxCtx {
		_, used := ep.byCtx[c]
		_, res := reserved[c]
		if !used && !res {
			found = true
			break
		}
		if c == ep.maxCtx {
			break
		}
		c++
	}
	if !found {
		ep.ctxDone = true
		sig := RekeyReason(0)
		if ep.exhausted.CompareAndSwap(false, true) {
			sig = RekeyContextsExhausted
		}
		return nil, sig, fmt.Errorf("%w: epoch %d, maximum context %d", ErrContextExhausted, ep.num, ep.maxCtx)
	}
	nk, err := ep.newSendKeyLocked(s, c)
	if err != nil {
		return nil, 0, err
	}
	if c == ep.maxCtx {
		ep.ctxDone = true // c+1 would wrap around when maxCtx is 2^64-1
	}
	ep.nextCtx = c + 1
	k.next = nk
	s.stats.rotations.Add(1)
	sig := RekeyReason(0)
	if ep.usageSent.CompareAndSwap(false, true) {
		sig = RekeyUsage
	}
	return nk, sig, nil
}

func (ep *epochState) newSendKeyLocked(s *Schedule, ctx uint64) (*sendKey, error) {
	if ctx > ep.maxCtx {
		return nil, fmt.Errorf("%w: context %d, epoch %d allows up to %d", ErrContextRange, ctx, ep.num, ep.maxCtx)
	}
	kid := ep.layout.kid(ctx, ep.index, ep.num)
	snd, err := sframe.NewSender(s.suite, kid, ep.baseKey)
	if err != nil {
		return nil, err
	}
	k := &sendKey{ep: ep, ctx: ctx, snd: snd}
	ep.byCtx[ctx] = k
	return k, nil
}
