// Package aesgcm implements AES-GCM (12-byte nonce, 16-byte tag) with
// VAES/VPCLMULQDQ fast paths on amd64 (AVX-512 on zmm, AVX2 on ymm), plus a
// multi-message batch API. Everywhere else, and under the purego build tag,
// it falls back to crypto/cipher's GCM.
package aesgcm

//go:generate sh -c "cd _asm && go run . -out ../aesgcm_amd64.s"

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"slices"
	"strconv"
	"sync"
	"unsafe"

	"github.com/moqsframe/moqsframe/internal/alias"
	"github.com/moqsframe/moqsframe/internal/impl"
)

const (
	// NonceSize is the size of the nonce in bytes.
	NonceSize = 12
	// TagSize is the size of the authentication tag in bytes.
	TagSize = 16

	// maxPlaintext is the GCM limit for a 32-bit block counter starting at 2.
	maxPlaintext = ((1 << 32) - 2) * aes.BlockSize
)

// ErrOpen is returned (and stored in Message.Err) when authentication fails.
var ErrOpen = errors.New("aesgcm: message authentication failed")

// AEAD is AES-GCM with a 12-byte nonce and a 16-byte tag. It implements
// crypto/cipher.AEAD and is safe for concurrent use.
type AEAD struct {
	std cipher.AEAD // crypto/cipher GCM, the generic implementation
	k   *gcmKey     // precomputed state for the assembly paths (nil if none)
}

var _ cipher.AEAD = (*AEAD)(nil)

// Message is one independent AEAD operation in a batch (same key).
type Message struct {
	Nonce []byte // 12 bytes
	AAD   []byte
	In    []byte // plaintext (seal) or ciphertext||tag (open)
	Out   []byte // len(In)+16 (seal) or len(In)-16 (open); may alias In exactly, must not overlap otherwise
	Err   error  // set by OpenBatch: nil or ErrOpen
}

// New returns AES-GCM (12-byte nonce, 16-byte tag) for a 16- or 32-byte key.
func New(key []byte) (*AEAD, error) {
	switch len(key) {
	case 16, 32:
	default:
		return nil, errors.New("aesgcm: invalid key size " + strconv.Itoa(len(key)))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	std, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	a := &AEAD{std: std}
	a.k = newKey(key)
	return a, nil
}

// NonceSize returns 12.
func (a *AEAD) NonceSize() int { return NonceSize }

// Overhead returns 16.
func (a *AEAD) Overhead() int { return TagSize }

// Seal encrypts and authenticates plaintext, authenticates aad, and appends
// the result to dst. To reuse plaintext's storage for the output, use
// plaintext[:0] as dst; otherwise dst must not overlap plaintext.
func (a *AEAD) Seal(dst, nonce, plaintext, aad []byte) []byte {
	if len(nonce) != NonceSize {
		panic("aesgcm: incorrect nonce length given to GCM")
	}
	if uint64(len(plaintext)) > maxPlaintext {
		panic("aesgcm: message too large for GCM")
	}
	ret, out := alias.SliceForAppend(dst, len(plaintext)+TagSize)
	if alias.InexactOverlap(out, plaintext) {
		panic("aesgcm: invalid buffer overlap")
	}
	if alias.InexactOverlap(out, aad) {
		panic("aesgcm: invalid buffer overlap of output and additional data")
	}
	a.seal(out, nonce, plaintext, aad)
	return ret
}

// Open authenticates and decrypts ciphertext, authenticates aad, and, if
// successful, appends the plaintext to dst. To reuse ciphertext's storage for
// the output, use ciphertext[:0] as dst; otherwise dst must not overlap it.
func (a *AEAD) Open(dst, nonce, ciphertext, aad []byte) ([]byte, error) {
	if len(nonce) != NonceSize {
		panic("aesgcm: incorrect nonce length given to GCM")
	}
	if len(ciphertext) < TagSize {
		return nil, ErrOpen
	}
	if uint64(len(ciphertext)) > maxPlaintext+TagSize {
		return nil, ErrOpen
	}
	ret, out := alias.SliceForAppend(dst, len(ciphertext)-TagSize)
	if alias.InexactOverlap(out, ciphertext) {
		panic("aesgcm: invalid buffer overlap")
	}
	if alias.InexactOverlap(out, aad) {
		panic("aesgcm: invalid buffer overlap of output and additional data")
	}
	if !a.open(out, nonce, ciphertext, aad) {
		return nil, ErrOpen
	}
	return ret, nil
}

func checkMessage(m *Message, seal bool) {
	if len(m.Nonce) != NonceSize {
		panic("aesgcm: incorrect nonce length in Message")
	}
	if seal {
		if uint64(len(m.In)) > maxPlaintext {
			panic("aesgcm: message too large for GCM")
		}
		if len(m.Out) != len(m.In)+TagSize {
			panic("aesgcm: Message.Out must be len(In)+16 for seal")
		}
	} else if len(m.In) >= TagSize && len(m.Out) != len(m.In)-TagSize {
		panic("aesgcm: Message.Out must be len(In)-16 for open")
	}
	if alias.InexactOverlap(m.Out, m.In) || alias.InexactOverlap(m.Out, m.AAD) {
		panic("aesgcm: invalid buffer overlap in Message")
	}
}

// SealBatch seals every message in msgs (Out = ciphertext||tag).
// Messages are independent: each has its own nonce, AAD and length, and
// none may read from another's Out (the kernels work on several messages
// at once, so a tag may be written after a later message's inputs are read).
func (a *AEAD) SealBatch(msgs []Message) {
	for i := range msgs {
		checkMessage(&msgs[i], true)
	}
	a.sealBatch(msgs)
}

// OpenBatch opens every message in msgs; as for SealBatch, no message may
// read from another's Out. For each message that fails
// authentication, Out is zeroed and Err is set to ErrOpen; otherwise Err is
// nil. It returns the number of failed messages.
func (a *AEAD) OpenBatch(msgs []Message) (failed int) {
	for i := range msgs {
		m := &msgs[i]
		if len(m.In) < TagSize || uint64(len(m.In)) > maxPlaintext+TagSize {
			continue
		}
		checkMessage(m, false)
	}
	return a.openBatch(msgs)
}

// batchDesc describes one message for the assembly kernels, which loop
// over an array of them with the key schedule and constants loaded once.
// Layout hard-coded in _asm/main.go (descSize = 56).
type batchDesc struct {
	out, in *byte
	n       int
	aad     *byte
	aadLen  int
	nonce   *byte
	tag     *byte // seal: &out[n]; open: where the computed tag is written (avx512) or the check's result, 1 or 0 (avx2)
}

// A SealList is a batch of seals under one key, laid out for the
// multi-buffer kernel as it is built: Add checks one message and writes the
// kernel's descriptor for it directly. A caller that lays out its own nonces
// and AADs (package sframe derives them from a counter, header and metadata)
// thus makes one pass over its objects, instead of filling Messages that
// SealBatch checks and converts in two more. The zero value is empty; reuse
// one with Reset to avoid allocating.
type SealList struct {
	d []batchDesc
}

// Add appends the seal of in into out, which must be len(in)+16 bytes
// (ciphertext, then tag), under a 12-byte nonce and aad. Nothing is read
// before SealList: in, nonce and aad must stay unchanged until it returns.
// out may alias in exactly but must not overlap it otherwise, nor aad. It
// panics on the same misuse as SealBatch.
func (l *SealList) Add(out, in, nonce, aad []byte) {
	if len(nonce) != NonceSize {
		panic("aesgcm: incorrect nonce length in SealList.Add")
	}
	if uint64(len(in)) > maxPlaintext {
		panic("aesgcm: message too large for GCM")
	}
	if len(out) != len(in)+TagSize {
		panic("aesgcm: SealList.Add needs len(out) = len(in)+16")
	}
	if alias.InexactOverlap(out, in) || alias.InexactOverlap(out, aad) {
		panic("aesgcm: invalid buffer overlap in SealList.Add")
	}
	// Reslice and set every field: append(l.d, batchDesc{}) zeroes the
	// descriptor first, which measured as half of Add.
	if len(l.d) == cap(l.d) {
		l.d = slices.Grow(l.d, 1)
	}
	l.d = l.d[:len(l.d)+1]
	d := &l.d[len(l.d)-1]
	// Field by field: see sealBatch.
	d.out = unsafe.SliceData(out)
	d.in = unsafe.SliceData(in)
	d.n = len(in)
	d.aad = unsafe.SliceData(aad)
	d.aadLen = len(aad)
	d.nonce = unsafe.SliceData(nonce)
	d.tag = &out[len(in)]
}

// Len returns the number of messages added since the last Reset.
func (l *SealList) Len() int { return len(l.d) }

// Reset empties the list, keeping its memory and dropping its references
// to the messages' buffers.
func (l *SealList) Reset() {
	clear(l.d)
	l.d = l.d[:0]
}

// SealList seals every message added to l, in one call into the
// multi-buffer kernel where there is one. l is left as it was.
func (a *AEAD) SealList(l *SealList) {
	if len(l.d) > 0 {
		a.sealList(l.d)
	}
}

// An OpenList is a batch of opens under one key, laid out for the
// multi-buffer kernel as it is built, as SealList is for seals. The zero
// value is empty; reuse one with Reset to avoid allocating.
type OpenList struct {
	d    []batchDesc
	tags [][TagSize]byte // tags the kernel computes, compared after
	ok   []bool
}

// Add appends the open of in (ciphertext, then the 16-byte tag) into out,
// which must be len(in)-16 bytes, under a 12-byte nonce and aad. in must
// hold at least the tag (check it first: shorter input never opens).
// Nothing is read before OpenList: in, nonce and aad must stay unchanged
// until it returns. out may alias in exactly but must not overlap it
// otherwise, nor aad. It panics on misuse.
func (l *OpenList) Add(out, in, nonce, aad []byte) {
	if len(nonce) != NonceSize {
		panic("aesgcm: incorrect nonce length in OpenList.Add")
	}
	if len(in) < TagSize || uint64(len(in)) > maxPlaintext+TagSize {
		panic("aesgcm: OpenList.Add needs len(in) >= 16")
	}
	if len(out) != len(in)-TagSize {
		panic("aesgcm: OpenList.Add needs len(out) = len(in)-16")
	}
	if alias.InexactOverlap(out, in) || alias.InexactOverlap(out, aad) {
		panic("aesgcm: invalid buffer overlap in OpenList.Add")
	}
	if len(l.d) == cap(l.d) {
		l.d = slices.Grow(l.d, 1)
	}
	l.d = l.d[:len(l.d)+1]
	d := &l.d[len(l.d)-1] // every field is set (tag in OpenList)
	d.out = unsafe.SliceData(out)
	d.in = unsafe.SliceData(in)
	d.n = len(out)
	d.aad = unsafe.SliceData(aad)
	d.aadLen = len(aad)
	d.nonce = unsafe.SliceData(nonce)
}

// Len returns the number of messages added since the last Reset.
func (l *OpenList) Len() int { return len(l.d) }

// OK reports whether message i (in the order added) authenticated in the
// last OpenList call.
func (l *OpenList) OK(i int) bool { return l.ok[i] }

// Reset empties the list, keeping its memory and dropping its references
// to the messages' buffers.
func (l *OpenList) Reset() {
	clear(l.d)
	l.d = l.d[:0]
}

// OpenList opens every message added to l, in one call into the
// multi-buffer kernel where there is one, and returns how many failed. Each
// tag is compared in constant time; a message that fails has its out
// zeroed and l.OK false, and the others are unaffected.
func (a *AEAD) OpenList(l *OpenList) (failed int) {
	n := len(l.d)
	if n == 0 {
		return 0
	}
	l.ok = slices.Grow(l.ok[:0], n)[:n]
	l.tags = slices.Grow(l.tags[:0], n)[:n]
	return a.openList(l)
}

// received returns the tag that came with described message d.
func (d *batchDesc) received() []byte {
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(d.in), d.n)), TagSize)
}

// openDescsGeneric opens described messages with crypto/cipher.
func (a *AEAD) openDescsGeneric(l *OpenList) (failed int) {
	for i := range l.d {
		d := &l.d[i]
		out := unsafe.Slice(d.out, d.n)
		l.ok[i] = a.openStd(out, unsafe.Slice(d.nonce, NonceSize), unsafe.Slice(d.in, d.n+TagSize), unsafe.Slice(d.aad, d.aadLen))
		if !l.ok[i] {
			failed++
		}
	}
	return failed
}

// sealDescsGeneric seals described messages with crypto/cipher.
func (a *AEAD) sealDescsGeneric(ds []batchDesc) {
	for i := range ds {
		d := &ds[i]
		out := unsafe.Slice(d.out, d.n+TagSize)
		a.std.Seal(out[:0], unsafe.Slice(d.nonce, NonceSize), unsafe.Slice(d.in, d.n), unsafe.Slice(d.aad, d.aadLen))
	}
}

// genericArgs holds copies of a nonce and an AAD for crypto/cipher. What is
// passed to an interface method escapes, so without the copies Seal and
// Open would make every caller's nonce and AAD escape to the heap, even on
// the assembly paths; with them, callers may build both on the stack.
type genericArgs struct {
	nonce [NonceSize]byte
	aad   []byte
}

var genericArgsPool = sync.Pool{New: func() any { return &genericArgs{aad: make([]byte, 0, 256)} }}

// copyArgs returns pooled copies of nonce and aad; Put it back when done.
func copyArgs(nonce, aad []byte) *genericArgs {
	g := genericArgsPool.Get().(*genericArgs)
	copy(g.nonce[:], nonce)
	g.aad = append(g.aad[:0], aad...)
	return g
}

// sealGeneric / openGeneric use crypto/cipher.
func (a *AEAD) sealGeneric(out, nonce, plaintext, aad []byte) {
	g := copyArgs(nonce, aad)
	a.std.Seal(out[:0], g.nonce[:], plaintext, g.aad)
	genericArgsPool.Put(g)
}

func (a *AEAD) openGeneric(out, nonce, ciphertext, aad []byte) bool {
	g := copyArgs(nonce, aad)
	ok := a.openStd(out, g.nonce[:], ciphertext, g.aad)
	genericArgsPool.Put(g)
	return ok
}

// sealBatchGeneric and openStd hand the messages' own nonces and AADs to
// crypto/cipher: they are in the caller's []Message, which escapes anyway.
func (a *AEAD) sealBatchGeneric(msgs []Message) {
	for i := range msgs {
		m := &msgs[i]
		a.std.Seal(m.Out[:0], m.Nonce, m.In, m.AAD)
	}
}

func (a *AEAD) openStd(out, nonce, ciphertext, aad []byte) bool {
	if _, err := a.std.Open(out[:0], nonce, ciphertext, aad); err != nil {
		clear(out)
		return false
	}
	return true
}

func (a *AEAD) openBatchWith(msgs []Message, open func(out, nonce, ct, aad []byte) bool) (failed int) {
	for i := range msgs {
		m := &msgs[i]
		if len(m.In) < TagSize || uint64(len(m.In)) > maxPlaintext+TagSize {
			clear(m.Out)
			m.Err = ErrOpen
			failed++
			continue
		}
		if open(m.Out, m.Nonce, m.In, m.AAD) {
			m.Err = nil
		} else {
			m.Err = ErrOpen
			failed++
		}
	}
	return failed
}

// verifyTag compares the computed tag with the received one in constant
// time. On mismatch the output is zeroed.
func verifyTag(out []byte, computed *[TagSize]byte, received []byte) bool {
	if !tagEqual(computed, received) {
		clear(out)
		return false
	}
	return true
}

// tagEqual reports whether received (16 bytes) equals computed, in
// constant time: both halves are xored and or-ed together with no branch
// on the data, so the time does not depend on where they differ. Two
// 8-byte words instead of crypto/subtle's byte loop: in batch opens of
// small objects that loop was a fifth of the time.
func tagEqual(computed *[TagSize]byte, received []byte) bool {
	r := received[:TagSize]
	// Parenthesised: ^ and | have the same precedence in Go.
	d := (binary.LittleEndian.Uint64(computed[:8]) ^ binary.LittleEndian.Uint64(r[:8])) |
		(binary.LittleEndian.Uint64(computed[8:]) ^ binary.LittleEndian.Uint64(r[8:]))
	return subtle.ConstantTimeEq(int32(uint32(d)|uint32(d>>32)), 0) == 1
}

func init() { impl.RegisterBase("aesgcm", "generic") }

// Implementations returns the names of the implementations that this CPU
// supports, fastest first. "generic" (crypto/cipher) is always last. Tests
// and benchmarks force each one through internal/impl (impl.Select), which
// is deliberately not part of this package's API.
func Implementations() []string { return impl.Available("aesgcm") }

// Implementation returns the name of the implementation in use.
func Implementation() string { return impl.Selected("aesgcm") }
