package sframe

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/moqsframe/moqsframe/asm/aesgcm"
	"github.com/moqsframe/moqsframe/internal/alias"
)

// SealItem is one object of a batch given to Sender.SealBatch.
type SealItem struct {
	Metadata  []byte
	Plaintext []byte
	// Out receives the SFrame ciphertext, appended to Out[:0]. It must not
	// overlap Plaintext; give it capacity for len(Plaintext)+Overhead() to
	// avoid allocating.
	Out []byte
	Err error
}

// maxBatch bounds one counter reservation, far below MaxCounter's headroom.
const maxBatch = 1 << 16

type batchScratch struct {
	list   aesgcm.SealList
	nonces []byte
	aads   []byte
}

var batchPool = sync.Pool{New: func() any { return new(batchScratch) }}

// SealBatch seals every item with consecutive counters, as one call to the
// multi-buffer AES-GCM kernel where the suite and CPU allow. It sets each
// item's Out and Err and returns how many failed; items past the counter or
// usage limit fail with ErrCounterExhausted.
//
// The whole batch costs one atomic add on the counter and one on the usage
// total, whatever its length, so concurrent callers still get disjoint
// counters.
func (s *Sender) SealBatch(items []SealItem) (failed int) {
	if len(items) > maxBatch {
		return s.SealBatch(items[:maxBatch]) + s.SealBatch(items[maxBatch:])
	}
	// One pass checks sizes, totals the key usage and sizes the AAD arena
	// of the batch entry, so no later pass has to revisit the items.
	var blocks uint64
	mdLen := 0
	for i := range items {
		it := &items[i]
		if uint64(len(it.Plaintext)) > maxPlaintext {
			it.Err, it.Out = ErrTooLarge, it.Out[:0]
			failed++
			continue
		}
		it.Err = nil
		blocks += uint64(len(it.Plaintext)+15)/16 + 1
		mdLen += len(it.Metadata)
	}
	if s.blocks.Load() > MaxBlocks || s.blocks.Add(blocks) > MaxBlocks {
		return failAll(items, fmt.Errorf("%w: key used for %d blocks", ErrCounterExhausted, uint64(MaxBlocks)))
	}
	first, n := s.reserveRun(uint64(len(items)))
	if n < uint64(len(items)) {
		err := fmt.Errorf("%w: counter reached %d", ErrCounterExhausted, s.limit)
		for i := n; i < uint64(len(items)); i++ {
			it := &items[i]
			if it.Err == nil {
				failed++
			}
			it.Err, it.Out = err, it.Out[:0]
		}
	}
	run := items[:n]
	if s.key.gcm != nil && len(run) > 1 {
		s.key.sealBatch(first, run, mdLen)
		return failed
	}
	for i := range run {
		it := &run[i]
		if it.Err == nil {
			if it.Out, it.Err = s.key.seal(it.Out[:0], first+uint64(i), it.Metadata, it.Plaintext); it.Err != nil {
				it.Out = it.Out[:0]
				failed++
			}
		}
	}
	return failed
}

func failAll(items []SealItem, err error) int {
	for i := range items {
		items[i].Err, items[i].Out = err, items[i].Out[:0]
	}
	return len(items)
}

// reserveRun takes up to n consecutive counters; it returns the first and
// how many it got (fewer only at the counter limit). Batches are bounded
// well below the 2^32 headroom of MaxCounter.
func (s *Sender) reserveRun(n uint64) (first, got uint64) {
	if s.next.Load() >= s.limit {
		return s.limit, 0
	}
	first = s.next.Add(n) - n
	if first >= s.limit {
		return first, 0
	}
	return first, min(n, s.limit-first)
}

// sealBatch is the SFrame-aware batch entry: in one pass over the items it
// derives each nonce, writes each header into the output and the AAD arena
// (header || metadata) and describes the message to the multi-buffer kernel
// (aesgcm.SealList), then seals the whole run in one kernel call. Items
// with Err already set are skipped; their counters are simply never used.
// mdLen is the total length of the items' metadata.
//
// Everything per item is kept to stores the kernel needs: the arenas are
// sized once and indexed (not appended to), the key's fields are read once
// into locals, and short metadata is copied with two 16-byte moves.
func (k *key) sealBatch(first uint64, items []SealItem, mdLen int) {
	sc := batchPool.Get().(*batchScratch)
	// Sized up front so they never move while messages point into them.
	nonces := slices.Grow(sc.nonces[:0], len(items)*nonceSize)[:len(items)*nonceSize]
	aads := slices.Grow(sc.aads[:0], len(items)*MaxHeaderLen+mdLen)
	aads = aads[:cap(aads)]
	sc.nonces, sc.aads = nonces, aads
	// The KID's part of every header is the same; only the CTR changes.
	kid, kl := k.kid, valueLen(k.kid)
	var kidWord uint64
	switch {
	case kl == 0:
		kidWord = kid << 60
	case kl < 8: // longer KIDs never fit the 8-byte word below
		kidWord = uint64(0x80|(kl-1)<<4)<<56 | kid<<(56-8*kl)
	}
	saltHi, saltLo, tag := k.saltHi, k.saltLo, k.tag
	a := 0 // next free byte of aads
	for i := range items {
		it := &items[i]
		if it.Err != nil {
			continue
		}
		ctr := first + uint64(i)
		cl := valueLen(ctr)
		hlen := 1 + kl + cl
		var out []byte
		it.Out, out = alias.SliceForAppend(it.Out[:0], hlen+len(it.Plaintext)+tag)
		md := it.Metadata
		aad := aads[a : a+hlen+len(md)]
		if hlen <= 8 {
			// The header as one 8-byte word, stored whole in the output
			// and the AAD (both have room: out holds at least the tag
			// after the header, the arena MaxHeaderLen per item); the
			// kernel and the metadata overwrite the bytes past it.
			w := kidWord
			if cl == 0 {
				w |= ctr << 56
			} else {
				w |= uint64(0x08|(cl-1))<<56 | ctr<<(uint(64-8*hlen)&63) // hlen is 2..8: no shift past 63
			}
			binary.BigEndian.PutUint64(out, w)
			binary.BigEndian.PutUint64(aads[a:a+8], w)
		} else {
			putHeader(out, kid, ctr)
			putHeader(aad, kid, ctr)
		}
		copyShort(aad[hlen:], md)
		a += len(aad)
		nonce := nonces[i*nonceSize : i*nonceSize+nonceSize]
		binary.BigEndian.PutUint32(nonce, saltHi) // salt XOR CTR (§4.4.3)
		binary.BigEndian.PutUint64(nonce[4:], saltLo^ctr)
		sc.list.Add(out[hlen:], it.Plaintext, nonce, aad)
	}
	k.gcm.SealList(&sc.list)
	sc.list.Reset() // drop references to the caller's buffers
	batchPool.Put(sc)
}

// copyShort is copy(dst, src) for the usual MoQ metadata of 16 to 32 bytes
// as two overlapping 16-byte moves, without a call to memmove.
func copyShort(dst, src []byte) {
	if n := len(src); n >= 16 && n <= 32 && len(dst) >= n {
		*(*[16]byte)(dst) = *(*[16]byte)(src)
		*(*[16]byte)(dst[n-16:]) = *(*[16]byte)(src[n-16:])
		return
	}
	copy(dst, src)
}

// OpenItem is one object of a batch given to Receiver.OpenBatch.
type OpenItem struct {
	Metadata   []byte
	Ciphertext []byte
	// Out receives the plaintext, appended to Out[:0]. It may be
	// Ciphertext[:0] (in place); otherwise its spare capacity must not
	// overlap Ciphertext. Give it capacity for len(Ciphertext) to avoid
	// allocating.
	Out []byte
	Err error
}

type openScratch struct {
	list   aesgcm.OpenList
	refs   []openRef // one per message of list
	nonces []byte
	aads   []byte
}

// openRef ties a message of the OpenList to its item.
type openRef struct {
	item  int
	ctr   uint64
	shift bool // decrypted in place in the body, to move to Out after
	fresh bool // passed the replay check (set by flushOpen)
}

var openPool = sync.Pool{New: func() any { return new(openScratch) }}

// OpenBatch opens every item as Open would, with the same errors and
// counters, and returns how many failed. Consecutive items under one
// installed AES-GCM key are opened by one call into the multi-buffer
// kernel; an item that fails authentication fails alone (ErrAuthentication,
// counted) and the others open. Replay checks run after authentication, in
// item order, under one lock of the key's replay window per run. Each
// item's Out and Err are set; a failed item's Out is empty.
func (r *Receiver) OpenBatch(items []OpenItem) (failed int) {
	sc := openPool.Get().(*openScratch)
	// Sized up front so they never move while messages point into them.
	aadMax := 0
	for i := range items {
		aadMax += MaxHeaderLen + len(items[i].Metadata)
	}
	aads := slices.Grow(sc.aads[:0], aadMax)
	aads = aads[:cap(aads)]
	nonces := slices.Grow(sc.nonces[:0], len(items)*nonceSize)[:len(items)*nonceSize]
	sc.aads, sc.nonces = aads, nonces
	a := 0 // next free byte of aads
	var run *receiveKey
	for i := range items {
		it := &items[i]
		it.Err = nil
		rk, h, n := r.batchKey(it, run)
		if rk != run && run != nil {
			failed += r.flushOpen(sc, run, items)
			run = nil
		}
		if rk == nil {
			it.Out, it.Err = r.Open(it.Out[:0], it.Metadata, it.Ciphertext)
			if it.Err != nil {
				it.Out = it.Out[:0]
				failed++
			}
			continue
		}
		run = rk
		body := it.Ciphertext[n:]
		ptLen := len(body) - rk.tag
		var out []byte
		it.Out, out = alias.SliceForAppend(it.Out[:0], ptLen)
		shift := alias.InexactOverlap(out, body)
		if shift {
			out = body[:ptLen]
		}
		md := it.Metadata
		aad := aads[a : a+n+len(md)]
		copy(aad, it.Ciphertext[:n])
		copyShort(aad[n:], md)
		a += len(aad)
		nonce := nonces[i*nonceSize : i*nonceSize+nonceSize]
		binary.BigEndian.PutUint32(nonce, rk.saltHi) // salt XOR CTR (§4.4.3)
		binary.BigEndian.PutUint64(nonce[4:], rk.saltLo^h.CTR)
		sc.list.Add(out, body, nonce, aad)
		sc.refs = append(sc.refs, openRef{item: i, ctr: h.CTR, shift: shift})
	}
	if run != nil {
		failed += r.flushOpen(sc, run, items)
	}
	openPool.Put(sc)
	return failed
}

// batchKey returns the installed key that opens it in a batch, its header
// and the header's length; nil when it must take the single path (a
// malformed or truncated ciphertext, an unknown or resolved KID, a suite
// without a batch kernel), which then reports the error.
//
// last is the key of the previous item, if any: a run of one KID costs one
// map lookup.
func (r *Receiver) batchKey(it *OpenItem, last *receiveKey) (*receiveKey, Header, int) {
	h, n, err := ParseHeader(it.Ciphertext)
	if err != nil {
		return nil, h, 0
	}
	rk, ok := last, last != nil && last.kid == h.KID
	if !ok {
		rk, ok = (*r.keys.Load())[h.KID]
	}
	if !ok || rk.gcm == nil || len(it.Ciphertext)-n < rk.tag {
		return nil, h, 0
	}
	return rk, h, n
}

// flushOpen opens the messages gathered in sc, all under rk, and finishes
// their items: replay check, counters, errors. It empties sc (but keeps
// its arenas, which later messages of the batch still point into).
//
// The replay window is locked once for the run, only to check and mark
// the counters of the messages that authenticated, in item order; the
// outputs are moved or wiped after, and each counter of Stats is updated
// once.
func (r *Receiver) flushOpen(sc *openScratch, rk *receiveKey, items []OpenItem) (failed int) {
	rk.gcm.OpenList(&sc.list)
	refs := sc.refs
	if w := rk.replay; w != nil {
		w.mu.Lock()
		for j := range refs {
			refs[j].fresh = sc.list.OK(j) && w.acceptLocked(refs[j].ctr)
		}
		w.mu.Unlock()
	} else {
		for j := range refs {
			refs[j].fresh = sc.list.OK(j)
		}
	}
	var opened, authFailed, replayed uint64
	for j := range refs {
		ref := &refs[j]
		it := &items[ref.item]
		body := it.Ciphertext[len(it.Ciphertext)-len(it.Out)-rk.tag : len(it.Ciphertext)-rk.tag]
		switch {
		case ref.fresh:
			if ref.shift {
				copy(it.Out, body)
			}
			opened++
		case !sc.list.OK(j):
			authFailed++
			it.Err, it.Out = ErrAuthentication, it.Out[:0]
			failed++
		default: // authentic, but a replay
			if ref.shift {
				clear(body)
			}
			clear(it.Out)
			replayed++
			it.Err, it.Out = fmt.Errorf("%w: KID %d CTR %d", ErrReplay, rk.kid, ref.ctr), it.Out[:0]
			failed++
		}
	}
	if opened > 0 {
		r.stats.opened.Add(opened)
	}
	if authFailed > 0 {
		r.stats.authFailed.Add(authFailed)
	}
	if replayed > 0 {
		r.stats.replayed.Add(replayed)
	}
	sc.list.Reset() // drop references to the caller's buffers
	sc.refs = refs[:0]
	return failed
}
