package sframe

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// A Receiver decrypts SFrame ciphertexts with the keys installed in it,
// chosen by the KID in each header, and rejects replayed counters per KID.
// It is safe for concurrent use: lookups read an immutable map through an
// atomic pointer, so Open never waits for AddKey or RemoveKey.
type Receiver struct {
	window  int
	resolve KeyResolver

	mu   sync.Mutex // serialises writers of keys
	keys atomic.Pointer[map[uint64]*receiveKey]

	stats receiverCounters
}

type receiveKey struct {
	*key
	replay *replayWindow // nil when replay protection is off
}

// A KeyResolver supplies the base key for a KID the Receiver does not hold,
// so keys can be derived on first use. It returns ok=false for KIDs that are
// not valid; it must be cheap to refuse, since any peer can send any KID.
type KeyResolver func(kid uint64) (suite CipherSuite, baseKey []byte, ok bool)

// ReceiverOption configures a Receiver.
type ReceiverOption func(*Receiver)

// WithReplayWindow sets how far below the highest accepted counter a
// counter may be and still be accepted (once). Zero turns replay protection
// off, for callers that enforce it themselves. The default is
// DefaultReplayWindow.
func WithReplayWindow(n int) ReceiverOption { return func(r *Receiver) { r.window = max(n, 0) } }

// WithKeyResolver derives keys on demand for KIDs the Receiver does not
// hold yet. A resolved key is installed once a ciphertext under it
// authenticates, and stays until removed; forged KIDs are never cached.
func WithKeyResolver(f KeyResolver) ReceiverOption { return func(r *Receiver) { r.resolve = f } }

// NewReceiver returns a Receiver with no keys.
func NewReceiver(opts ...ReceiverOption) *Receiver {
	r := &Receiver{window: DefaultReplayWindow}
	for _, o := range opts {
		o(r)
	}
	empty := map[uint64]*receiveKey{}
	r.keys.Store(&empty)
	return r
}

// AddKey derives and installs the decryption key for kid. The base key must
// not be used for encryption by this party (RFC 9605 §4.4.1). It returns
// ErrDuplicateKID if kid already has a key.
func (r *Receiver) AddKey(suite CipherSuite, kid uint64, baseKey []byte) error {
	k, err := newKey(suite, kid, baseKey)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := (*r.keys.Load())[kid]; ok {
		return fmt.Errorf("%w: %d", ErrDuplicateKID, kid)
	}
	r.storeLocked(kid, r.newReceiveKey(k))
	return nil
}

func (r *Receiver) newReceiveKey(k *key) *receiveKey {
	rk := &receiveKey{key: k}
	if r.window > 0 {
		rk.replay = newReplayWindow(r.window)
	}
	return rk
}

// storeLocked publishes a copy of the key map with kid set to rk, or removed
// when rk is nil. The caller holds r.mu.
func (r *Receiver) storeLocked(kid uint64, rk *receiveKey) {
	old := *r.keys.Load()
	m := make(map[uint64]*receiveKey, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	if rk == nil {
		delete(m, kid)
	} else {
		m[kid] = rk
	}
	r.keys.Store(&m)
}

// RemoveKey uninstalls the key for kid and reports whether there was one.
// Opens already past the lookup finish with the removed key.
func (r *Receiver) RemoveKey(kid uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := (*r.keys.Load())[kid]; !ok {
		return false
	}
	r.storeLocked(kid, nil)
	return true
}

// HasKey reports whether a key for kid is installed.
func (r *Receiver) HasKey(kid uint64) bool {
	_, ok := (*r.keys.Load())[kid]
	return ok
}

// Len returns how many keys are installed, resolved ones included.
func (r *Receiver) Len() int { return len(*r.keys.Load()) }

// lookup returns the key for kid. A key from the resolver is returned
// unstored (resolved=true): it is cached only once a ciphertext under it
// authenticates, so forged KIDs cost a derivation but never memory.
func (r *Receiver) lookup(kid uint64) (rk *receiveKey, resolved bool, err error) {
	if rk, ok := (*r.keys.Load())[kid]; ok {
		return rk, false, nil
	}
	if r.resolve == nil {
		return nil, false, fmt.Errorf("%w: %d", ErrUnknownKID, kid)
	}
	suite, baseKey, ok := r.resolve(kid)
	if !ok {
		return nil, false, fmt.Errorf("%w: %d", ErrUnknownKID, kid)
	}
	k, err := newKey(suite, kid, baseKey)
	if err != nil {
		return nil, false, err
	}
	return r.newReceiveKey(k), true, nil
}

// keep stores a resolved key that just authenticated a ciphertext, unless
// a racing Open stored one first, and returns the stored key: replay
// checks must run against the one window that persists.
func (r *Receiver) keep(rk *receiveKey) *receiveKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	if stored, ok := (*r.keys.Load())[rk.kid]; ok {
		return stored
	}
	r.storeLocked(rk.kid, rk)
	return rk
}

// Open authenticates and decrypts an SFrame ciphertext (header ||
// ciphertext || tag) with the given metadata and appends the plaintext to
// dst. To decrypt in place, pass ciphertext[:0] as dst; otherwise dst's
// spare capacity must not overlap ciphertext. On failure it returns one of
// ErrMalformedHeader, ErrTruncated, ErrUnknownKID, ErrAuthentication or
// ErrReplay (possibly wrapped), counts it in Stats, and dst's contents past
// len(dst) are unspecified. ErrReplay is only for ciphertexts that
// authenticate: one that does not is ErrAuthentication, whatever its
// counter.
func (r *Receiver) Open(dst, metadata, ciphertext []byte) ([]byte, error) {
	h, n, err := ParseHeader(ciphertext)
	if err != nil {
		r.stats.malformed.Add(1)
		return nil, err
	}
	rk, resolved, err := r.lookup(h.KID)
	if err != nil {
		r.stats.unknownKID.Add(1)
		return nil, err
	}
	body := ciphertext[n:]
	if len(body) < rk.tag {
		r.stats.malformed.Add(1)
		return nil, fmt.Errorf("%w: %d bytes, tag is %d", ErrTruncated, len(body), rk.tag)
	}
	// The tag comes before the replay window: anyone can send a seen KID
	// and counter with garbage, and an object from an old key under a
	// reused KID does not verify under the current one. Neither is a
	// replay. The window is checked and marked in one step, as another
	// Open may race us.
	out, err := rk.open(dst, ciphertext[:n], h, metadata, body)
	if err != nil {
		r.stats.authFailed.Add(1)
		return nil, err
	}
	if resolved {
		rk = r.keep(rk)
	}
	if rk.replay != nil && !rk.replay.accept(h.CTR) {
		clear(out[len(dst):])
		r.stats.replayed.Add(1)
		return nil, fmt.Errorf("%w: KID %d CTR %d", ErrReplay, h.KID, h.CTR)
	}
	r.stats.opened.Add(1)
	return out, nil
}

// ReceiverStats counts a Receiver's outcomes since it was made.
type ReceiverStats struct {
	Opened     uint64 // authenticated and decrypted
	Malformed  uint64 // bad header or truncated ciphertext
	UnknownKID uint64 // no key for the KID
	AuthFailed uint64 // tag did not verify
	Replayed   uint64 // counter already seen or too old
}

type receiverCounters struct {
	opened, malformed, unknownKID, authFailed, replayed atomic.Uint64
}

// Stats returns the Receiver's counters.
func (r *Receiver) Stats() ReceiverStats {
	return ReceiverStats{
		Opened:     r.stats.opened.Load(),
		Malformed:  r.stats.malformed.Load(),
		UnknownKID: r.stats.unknownKID.Load(),
		AuthFailed: r.stats.authFailed.Load(),
		Replayed:   r.stats.replayed.Load(),
	}
}
