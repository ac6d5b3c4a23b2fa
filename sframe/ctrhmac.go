package sframe

import (
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"sync"

	"github.com/moqsframe/moqsframe/asm/aesgcm"
	"github.com/moqsframe/moqsframe/internal/alias"
)

// ctrHMAC is the AES-CTR + HMAC AEAD of RFC 9605 §4.5.1 (encrypt-then-MAC,
// truncated tag). It implements cipher.AEAD and is safe for concurrent use:
// per-call state (the HMAC, keystream scratch) comes from a pool, so steady
// state allocates nothing.
type ctrHMAC struct {
	ctr     *aesgcm.CTR // the VAES keystream where the CPU has it
	tagSize int
	states  sync.Pool // *ctrHMACState
}

type ctrHMACState struct {
	mac    hash.Hash
	iv     [16]byte
	sum    [64]byte
	prefix []byte // len(aad) || len(ct) || Nt || nonce || aad, hashed in one Write
}

var errOpen = errors.New("sframe: ctr-hmac: authentication failed")

func newCTRHMAC(p *suiteParams, key []byte) (*ctrHMAC, error) {
	encKey, authKey := key[:p.nka], key[p.nka:]
	ctr, err := aesgcm.NewCTR(encKey)
	if err != nil {
		return nil, err
	}
	authKey = append([]byte(nil), authKey...)
	a := &ctrHMAC{ctr: ctr, tagSize: p.nt}
	a.states.New = func() any {
		return &ctrHMACState{mac: hmac.New(p.hash, authKey), prefix: make([]byte, 0, 256)}
	}
	return a, nil
}

func (a *ctrHMAC) NonceSize() int { return nonceSize }
func (a *ctrHMAC) Overhead() int  { return a.tagSize }

func (a *ctrHMAC) Seal(dst, nonce, plaintext, aad []byte) []byte {
	if len(nonce) != nonceSize {
		panic("sframe: ctr-hmac: incorrect nonce length")
	}
	ret, out := alias.SliceForAppend(dst, len(plaintext)+a.tagSize)
	if alias.InexactOverlap(out, plaintext) {
		panic("sframe: ctr-hmac: invalid buffer overlap")
	}
	s := a.states.Get().(*ctrHMACState)
	ct := out[:len(plaintext)]
	a.xorKeyStream(s, ct, plaintext, nonce)
	a.tag(s, out[len(plaintext):], aad, nil, ct)
	a.states.Put(s)
	return ret
}

// sealParts is Seal for package sframe's own use: out is exactly
// len(plaintext)+tagSize bytes, the nonce comes by value and the AAD as its
// two parts (header, metadata), which go straight into the MAC's prefix.
// One pooled state serves the whole call and nothing the caller passes
// escapes, where Seal needs the caller to join the AAD in a pooled buffer
// first.
func (a *ctrHMAC) sealParts(out []byte, nonce [nonceSize]byte, plaintext, hdr, md []byte) {
	s := a.states.Get().(*ctrHMACState)
	ct := out[:len(plaintext)]
	a.xorKeyStream(s, ct, plaintext, nonce[:])
	a.tag(s, out[len(plaintext):], hdr, md, ct)
	a.states.Put(s)
}

// openParts is Open for package sframe, as sealParts is Seal: it writes the
// plaintext to out (len(ciphertext)-tagSize bytes, which may alias
// ciphertext exactly) and reports whether the tag verified; on failure out
// is untouched.
func (a *ctrHMAC) openParts(out []byte, nonce [nonceSize]byte, ciphertext, hdr, md []byte) bool {
	ct, tag := ciphertext[:len(ciphertext)-a.tagSize], ciphertext[len(ciphertext)-a.tagSize:]
	s := a.states.Get().(*ctrHMACState)
	copy(s.iv[:], nonce[:])
	want := s.sum[:a.tagSize]
	a.tag(s, want, hdr, md, ct)
	if subtle.ConstantTimeCompare(want, tag) != 1 {
		a.states.Put(s)
		return false
	}
	a.xorKeyStream(s, out, ct, nonce[:])
	a.states.Put(s)
	return true
}

func (a *ctrHMAC) Open(dst, nonce, ciphertext, aad []byte) ([]byte, error) {
	if len(nonce) != nonceSize {
		panic("sframe: ctr-hmac: incorrect nonce length")
	}
	if len(ciphertext) < a.tagSize {
		return nil, errOpen
	}
	ct, tag := ciphertext[:len(ciphertext)-a.tagSize], ciphertext[len(ciphertext)-a.tagSize:]
	ret, out := alias.SliceForAppend(dst, len(ct))
	if alias.InexactOverlap(out, ciphertext) {
		panic("sframe: ctr-hmac: invalid buffer overlap")
	}
	s := a.states.Get().(*ctrHMACState)
	copy(s.iv[:], nonce)
	want := s.sum[:a.tagSize]
	a.tag(s, want, aad, nil, ct)
	if subtle.ConstantTimeCompare(want, tag) != 1 {
		a.states.Put(s)
		return nil, errOpen
	}
	a.xorKeyStream(s, out, ct, nonce)
	a.states.Put(s)
	return ret, nil
}

// tag writes the truncated HMAC over
// len(aad) || len(ct) || Nt || nonce || aad || ct (each length 8 bytes),
// where aad is aad1 || aad2 and the nonce is s.iv[:12]. Everything before
// the ciphertext is laid out in s.prefix and hashed in one Write.
func (a *ctrHMAC) tag(s *ctrHMACState, dst, aad1, aad2, ct []byte) {
	p := binary.BigEndian.AppendUint64(s.prefix[:0], uint64(len(aad1)+len(aad2)))
	p = binary.BigEndian.AppendUint64(p, uint64(len(ct)))
	p = binary.BigEndian.AppendUint64(p, uint64(a.tagSize))
	p = append(p, s.iv[:nonceSize]...)
	p = append(append(p, aad1...), aad2...)
	s.prefix = p
	s.mac.Reset()
	s.mac.Write(p)
	s.mac.Write(ct)
	sum := s.mac.Sum(s.sum[:0])
	copy(dst, sum[:a.tagSize])
}

// xorKeyStream XORs src with the AES-CTR keystream starting at the counter
// block nonce || 0x00000000 (RFC 9605 §4.5.1). The 32-bit block counter
// never wraps: a plaintext is at most maxPlaintext bytes.
func (a *ctrHMAC) xorKeyStream(s *ctrHMACState, dst, src, nonce []byte) {
	copy(s.iv[:], nonce)
	clear(s.iv[nonceSize:])
	a.ctr.XORKeyStream(dst, src, &s.iv)
}
