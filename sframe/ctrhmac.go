package sframe

import (
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"sync"

	"github.com/moqsframe/moqsframe/asm/aesgcm"
	"github.com/moqsframe/moqsframe/asm/hmacsha256"
	"github.com/moqsframe/moqsframe/internal/alias"
)

// ctrHMAC is the AES-CTR + HMAC AEAD of RFC 9605 §4.5.1 (encrypt-then-MAC,
// truncated tag). It implements cipher.AEAD and is safe for concurrent use;
// steady state allocates nothing.
//
// The SHA-256 suites (1-3) MAC with hmacsha256: the key's inner and outer
// states are computed once here, and each tag hashes the MAC prefix and the
// ciphertext from where they lie, with per-call state on the stack. The
// SHA-512 suites use crypto/hmac, with per-call state from a pool.
type ctrHMAC struct {
	ctr     *aesgcm.CTR // the VAES keystream where the CPU has it
	tagSize int
	mac256  *hmacsha256.Key // SHA-256 suites; nil for SHA-512
	stitch  *hmacsha256.CTR // AES-128 schedule of the one-pass seal; nil without its kernel
	states  sync.Pool       // *ctrHMACState, SHA-512 suites
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
	a := &ctrHMAC{ctr: ctr, tagSize: p.nt}
	if p.nh == hmacsha256.Size {
		a.mac256 = hmacsha256.New(authKey)
		if len(encKey) == 16 {
			a.stitch = hmacsha256.NewCTR((*[16]byte)(encKey))
		}
		return a, nil
	}
	authKey = append([]byte(nil), authKey...)
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
	a.sealParts(out, [nonceSize]byte(nonce), plaintext, aad, nil)
	return ret
}

// sealParts is Seal for package sframe's own use: out is exactly
// len(plaintext)+tagSize bytes, the nonce comes by value and the AAD as its
// two parts (header, metadata), which go straight into the MAC's prefix.
// Nothing the caller passes escapes, where Seal needs the caller to join the
// AAD in a pooled buffer first.
func (a *ctrHMAC) sealParts(out []byte, nonce [nonceSize]byte, plaintext, hdr, md []byte) {
	ct := out[:len(plaintext)]
	if a.mac256 != nil {
		if a.stitch != nil {
			// One pass: each block of ciphertext is hashed in the
			// instruction stream that encrypts a later one.
			var iv [16]byte
			copy(iv[:], nonce[:])
			fixed := a.macFixed(&nonce, len(hdr)+len(md), len(plaintext))
			var sum [hmacsha256.Size]byte
			if a.mac256.SealCTR(&sum, a.stitch, &iv, ct, plaintext, fixed[:], hdr, md) {
				copy(out[len(plaintext):], sum[:a.tagSize])
				return
			}
		}
		a.xorKeyStream256(ct, plaintext, &nonce)
		a.tag256(out[len(plaintext):], &nonce, hdr, md, ct)
		return
	}
	s := a.states.Get().(*ctrHMACState)
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
	if a.mac256 != nil {
		// Verify before decrypting: out may alias the ciphertext.
		var want [hmacsha256.Size]byte
		a.tag256(want[:a.tagSize], &nonce, hdr, md, ct)
		if subtle.ConstantTimeCompare(want[:a.tagSize], tag) != 1 {
			return false
		}
		a.xorKeyStream256(out, ct, &nonce)
		return true
	}
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
	ret, out := alias.SliceForAppend(dst, len(ciphertext)-a.tagSize)
	if alias.InexactOverlap(out, ciphertext) {
		panic("sframe: ctr-hmac: invalid buffer overlap")
	}
	if !a.openParts(out, [nonceSize]byte(nonce), ciphertext, aad, nil) {
		return nil, errOpen
	}
	return ret, nil
}

// tag256 is tag for the SHA-256 suites: the fixed part of the prefix
// (lengths and nonce) is laid out on the stack and every part is hashed
// from where it lies, from the key's precomputed HMAC states.
func (a *ctrHMAC) tag256(dst []byte, nonce *[nonceSize]byte, aad1, aad2, ct []byte) {
	fixed := a.macFixed(nonce, len(aad1)+len(aad2), len(ct))
	var sum [hmacsha256.Size]byte
	a.mac256.Sum(&sum, fixed[:], aad1, aad2, ct)
	copy(dst, sum[:a.tagSize])
}

// macFixed returns the fixed part of the MAC prefix:
// len(aad) || len(ct) || Nt (8 bytes each) || nonce.
func (a *ctrHMAC) macFixed(nonce *[nonceSize]byte, aadLen, ctLen int) (fixed [3*8 + nonceSize]byte) {
	binary.BigEndian.PutUint64(fixed[0:], uint64(aadLen))
	binary.BigEndian.PutUint64(fixed[8:], uint64(ctLen))
	binary.BigEndian.PutUint64(fixed[16:], uint64(a.tagSize))
	copy(fixed[24:], nonce[:])
	return fixed
}

// xorKeyStream256 is xorKeyStream with the counter block on the stack.
func (a *ctrHMAC) xorKeyStream256(dst, src []byte, nonce *[nonceSize]byte) {
	var iv [16]byte
	copy(iv[:], nonce[:])
	a.ctr.XORKeyStream(dst, src, &iv)
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
