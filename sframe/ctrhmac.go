package sframe

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"sync"
)

// ctrHMAC is the AES-CTR + HMAC AEAD of RFC 9605 §4.5.1 (encrypt-then-MAC,
// truncated tag). It implements cipher.AEAD and is safe for concurrent use:
// per-call state (the HMAC, keystream scratch) comes from a pool, so steady
// state allocates nothing.
type ctrHMAC struct {
	block   cipher.Block
	tagSize int
	states  sync.Pool // *ctrHMACState
}

// ctrBatch is how many counter blocks are encrypted per keystream step.
const ctrBatch = 16

type ctrHMACState struct {
	mac      hash.Hash
	counters [ctrBatch * aes.BlockSize]byte
	stream   [ctrBatch * aes.BlockSize]byte
	lengths  [24]byte
	sum      [64]byte
}

var errOpen = errors.New("sframe: ctr-hmac: authentication failed")

func newCTRHMAC(p *suiteParams, key []byte) (*ctrHMAC, error) {
	encKey, authKey := key[:p.nka], key[p.nka:]
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, err
	}
	authKey = append([]byte(nil), authKey...)
	a := &ctrHMAC{block: block, tagSize: p.nt}
	a.states.New = func() any { return &ctrHMACState{mac: hmac.New(p.hash, authKey)} }
	return a, nil
}

func (a *ctrHMAC) NonceSize() int { return nonceSize }
func (a *ctrHMAC) Overhead() int  { return a.tagSize }

func (a *ctrHMAC) Seal(dst, nonce, plaintext, aad []byte) []byte {
	if len(nonce) != nonceSize {
		panic("sframe: ctr-hmac: incorrect nonce length")
	}
	ret, out := sliceForAppend(dst, len(plaintext)+a.tagSize)
	if inexactOverlap(out, plaintext) {
		panic("sframe: ctr-hmac: invalid buffer overlap")
	}
	s := a.states.Get().(*ctrHMACState)
	ct := out[:len(plaintext)]
	a.xorKeyStream(s, ct, plaintext, nonce)
	a.tag(s, out[len(plaintext):], nonce, aad, ct)
	a.states.Put(s)
	return ret
}

func (a *ctrHMAC) Open(dst, nonce, ciphertext, aad []byte) ([]byte, error) {
	if len(nonce) != nonceSize {
		panic("sframe: ctr-hmac: incorrect nonce length")
	}
	if len(ciphertext) < a.tagSize {
		return nil, errOpen
	}
	ct, tag := ciphertext[:len(ciphertext)-a.tagSize], ciphertext[len(ciphertext)-a.tagSize:]
	ret, out := sliceForAppend(dst, len(ct))
	if inexactOverlap(out, ciphertext) {
		panic("sframe: ctr-hmac: invalid buffer overlap")
	}
	s := a.states.Get().(*ctrHMACState)
	want := s.sum[:a.tagSize]
	a.tag(s, want, nonce, aad, ct)
	if subtle.ConstantTimeCompare(want, tag) != 1 {
		a.states.Put(s)
		return nil, errOpen
	}
	a.xorKeyStream(s, out, ct, nonce)
	a.states.Put(s)
	return ret, nil
}

// tag writes the truncated HMAC over
// len(aad) || len(ct) || Nt || nonce || aad || ct (each length 8 bytes).
func (a *ctrHMAC) tag(s *ctrHMACState, dst, nonce, aad, ct []byte) {
	binary.BigEndian.PutUint64(s.lengths[0:], uint64(len(aad)))
	binary.BigEndian.PutUint64(s.lengths[8:], uint64(len(ct)))
	binary.BigEndian.PutUint64(s.lengths[16:], uint64(a.tagSize))
	s.mac.Reset()
	s.mac.Write(s.lengths[:])
	s.mac.Write(nonce)
	s.mac.Write(aad)
	s.mac.Write(ct)
	sum := s.mac.Sum(s.sum[:0])
	copy(dst, sum[:a.tagSize])
}

// xorKeyStream XORs src with the AES-CTR keystream starting at the counter
// block nonce || 0x00000000, incrementing the block as a big-endian integer.
func (a *ctrHMAC) xorKeyStream(s *ctrHMACState, dst, src, nonce []byte) {
	var ctr [aes.BlockSize]byte
	copy(ctr[:], nonce)
	for len(src) > 0 {
		n := min(len(src), len(s.stream))
		blocks := (n + aes.BlockSize - 1) / aes.BlockSize
		for i := range blocks {
			copy(s.counters[i*aes.BlockSize:], ctr[:])
			incrementBlock(&ctr)
		}
		for i := range blocks {
			off := i * aes.BlockSize
			a.block.Encrypt(s.stream[off:off+aes.BlockSize], s.counters[off:off+aes.BlockSize])
		}
		subtle.XORBytes(dst[:n], src[:n], s.stream[:n])
		dst, src = dst[n:], src[n:]
	}
}

func incrementBlock(b *[aes.BlockSize]byte) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			return
		}
	}
}

// sliceForAppend extends in by n bytes, reallocating only when its capacity
// is too small. It returns the extended slice and the n new bytes.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	return head, head[len(in):]
}
