package sidecar

import (
	"sync"

	"github.com/moqsframe/moqsframe/sframe"
)

// maxSendersPerTrack bounds the senders (KIDs) a track's loss state keeps.
// A track changes KID at every epoch (group mode) or publisher restart;
// the oldest sender's missing counters are counted when it is dropped.
const maxSendersPerTrack = 4

// lossTracker counts the objects of a track that never arrived, from the
// gaps in each sender's SFrame counters (RFC 9605 §4.3): a sender numbers
// its objects 0, 1, 2, … under one KID, so a counter missing for longer
// than the window, or still missing at Close, is an object lost somewhere
// on the way (relay, network, an outage longer than the publisher's
// reconnect buffer). MoQ object IDs restart with every group and a lost
// group tail leaves no gap in them; the counter has neither blind spot.
//
// Only authenticated objects are observed, so a forger cannot make the
// tracker count anything. Loss after a sender's last received object (its
// stream's tail, an epoch's last objects) is not visible to a receiver and
// is not counted.
//
// The window is the receiver's replay window, so an object counted lost is
// one the SFrame receiver refuses as too old: it cannot arrive later and be
// counted twice, once lost and once delivered.
type lossTracker struct {
	window  uint64 // counters, a multiple of 64
	mu      sync.Mutex
	senders map[string][]*senderWindow // by track, oldest first
	lost    func(n uint64)             // called with newly lost counts
}

func newLossTracker(window int, lost func(uint64)) *lossTracker {
	return &lossTracker{window: uint64(max(window, 64)+63) / 64 * 64, senders: map[string][]*senderWindow{}, lost: lost}
}

// senderWindow is a sliding bitmap of the counters seen from one KID.
type senderWindow struct {
	kid    uint64
	lo, hi uint64 // lowest and highest counter tracked
	bits   []uint64
}

func (w *senderWindow) size() uint64 { return uint64(len(w.bits)) * 64 }

func (w *senderWindow) bit(ctr uint64) (int, uint64) {
	i := ctr % w.size()
	return int(i / 64), 1 << (i % 64)
}

func (w *senderWindow) seen(ctr uint64) bool {
	word, mask := w.bit(ctr)
	return w.bits[word]&mask != 0
}

// missing counts the unseen counters in [from, to].
func (w *senderWindow) missing(from, to uint64) uint64 {
	var n uint64
	for c := from; c <= to; c++ {
		if !w.seen(c) {
			n++
		}
	}
	return n
}

// observe records an authenticated object's header. It returns the number
// of counters that became lost: they fell out of the window unseen.
func (w *senderWindow) observe(ctr uint64) (lost uint64) {
	lossWindow := w.size()
	switch {
	case ctr > w.hi:
		// Counters leaving the window: (hi-lossWindow, ctr-lossWindow].
		if ctr-w.hi >= lossWindow {
			lost = w.missing(max(w.lo, w.hi+1-min(w.hi+1, lossWindow)), w.hi) + (ctr - w.hi - 1) - (lossWindow - 1)
			clear(w.bits)
			w.lo = max(w.lo, ctr+1-lossWindow)
		} else {
			if ctr >= lossWindow {
				from := max(w.lo, w.hi+1-min(w.hi+1, lossWindow))
				if to := ctr - lossWindow; to >= from {
					lost = w.missing(from, to)
					w.lo = max(w.lo, to+1)
				}
			}
			for c := w.hi + 1; c < ctr; c++ {
				word, mask := w.bit(c)
				w.bits[word] &^= mask
			}
		}
		w.hi = ctr
	case ctr < w.lo && w.hi-ctr < lossWindow:
		// Reordered ahead of the first counter seen: widen the window
		// down, clearing the slots that were never written.
		for c := ctr + 1; c < w.lo; c++ {
			word, mask := w.bit(c)
			w.bits[word] &^= mask
		}
		w.lo = ctr
	case ctr < w.lo:
		return 0 // older than the window: counted lost already
	}
	word, mask := w.bit(ctr)
	w.bits[word] |= mask
	return lost
}

// Observe records one authenticated object of track by its SFrame header.
func (t *lossTracker) Observe(track string, h sframe.Header) {
	t.mu.Lock()
	ws := t.senders[track]
	var w *senderWindow
	for _, s := range ws {
		if s.kid == h.KID {
			w = s
			break
		}
	}
	var lost uint64
	if w == nil {
		if len(ws) == maxSendersPerTrack {
			lost = ws[0].missing(ws[0].lo, ws[0].hi)
			ws = ws[1:]
		}
		w = &senderWindow{kid: h.KID, lo: h.CTR, hi: h.CTR, bits: make([]uint64, t.window/64)}
		t.senders[track] = append(ws, w)
	}
	lost += w.observe(h.CTR)
	t.mu.Unlock()
	if lost > 0 {
		t.lost(lost)
	}
}

// Missing returns how many counters are missing inside the windows: not
// lost yet, as they may still arrive.
func (t *lossTracker) Missing() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n uint64
	for _, ws := range t.senders {
		for _, w := range ws {
			n += w.missing(w.lo, w.hi)
		}
	}
	return n
}

// Close counts every counter still missing inside the windows.
func (t *lossTracker) Close() {
	t.mu.Lock()
	var lost uint64
	for track, ws := range t.senders {
		for _, w := range ws {
			lost += w.missing(w.lo, w.hi)
		}
		delete(t.senders, track)
	}
	t.mu.Unlock()
	if lost > 0 {
		t.lost(lost)
	}
}
