package sframe

import "sync"

// DefaultReplayWindow is how many of the most recent counter values, up to
// the highest accepted, a Receiver tracks per KID: a counter in that range is
// accepted once, and an older one is rejected. MoQ delivers a
// track's objects over several streams, so they arrive out of order; 1024
// objects is over 30 s of 30 fps video.
const DefaultReplayWindow = 1024

// replayWindow is a sliding bitmap of accepted counters (RFC 4303 §3.4.3
// style). The Receiver calls accept only after authentication, so a forged
// ciphertext can neither move the window nor be taken for a replay.
type replayWindow struct {
	mu   sync.Mutex
	size uint64 // bits, a multiple of 64
	any  bool   // whether hi is set
	hi   uint64 // highest accepted counter
	bits []uint64
}

func newReplayWindow(size int) *replayWindow {
	words := (size + 63) / 64
	return &replayWindow{size: uint64(words) * 64, bits: make([]uint64, words)}
}

func (w *replayWindow) bit(ctr uint64) (word int, mask uint64) {
	i := ctr % w.size
	return int(i / 64), 1 << (i % 64)
}

// fresh reports whether ctr may still be accepted. The caller holds w.mu.
func (w *replayWindow) fresh(ctr uint64) bool {
	if !w.any || ctr > w.hi {
		return true
	}
	if w.hi-ctr >= w.size {
		return false
	}
	word, mask := w.bit(ctr)
	return w.bits[word]&mask == 0
}

// accept marks ctr as used, sliding the window forward if needed, and
// reports whether it was still fresh.
func (w *replayWindow) accept(ctr uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acceptLocked(ctr)
}

// acceptLocked is accept for a caller that holds w.mu, such as a batch
// open checking a run of counters under one lock.
func (w *replayWindow) acceptLocked(ctr uint64) bool {
	if !w.fresh(ctr) {
		return false
	}
	switch {
	case !w.any:
		w.any, w.hi = true, ctr
	case ctr > w.hi:
		if ctr-w.hi >= w.size {
			clear(w.bits)
		} else {
			for v := w.hi + 1; v != ctr+1; v++ {
				word, mask := w.bit(v)
				w.bits[word] &^= mask
			}
		}
		w.hi = ctr
	}
	word, mask := w.bit(ctr)
	w.bits[word] |= mask
	return true
}
