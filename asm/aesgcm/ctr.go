package aesgcm

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"strconv"
	"sync"

	"github.com/moqsframe/moqsframe/internal/alias"
)

// CTR is an AES-CTR keystream generator for the SFrame AES-CTR+HMAC suites
// (RFC 9605 §4.5.1): the counter block is iv, whose last 4 bytes are a
// 32-bit big-endian block counter that is incremented modulo 2^32 (it never
// carries into byte 11). A CTR holds no per-stream state, so it is safe for
// concurrent use and XORKeyStream does not allocate.
type CTR struct {
	b cipher.Block
	k *gcmKey // nil without an assembly implementation
}

// NewCTR returns an AES-CTR keystream generator for a 16- or 32-byte key.
func NewCTR(key []byte) (*CTR, error) {
	switch len(key) {
	case 16, 32:
	default:
		return nil, errors.New("aesgcm: invalid key size " + strconv.Itoa(len(key)))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return &CTR{b: b, k: newKey(key)}, nil
}

// XORKeyStream xors src with the keystream that starts at counter block iv
// and writes the result to dst. dst must be at least as long as src and may
// alias src exactly, but must not overlap it otherwise. iv is not modified.
func (c *CTR) XORKeyStream(dst, src []byte, iv *[16]byte) {
	if len(dst) < len(src) {
		panic("aesgcm: output smaller than input")
	}
	dst = dst[:len(src)]
	if alias.InexactOverlap(dst, src) {
		panic("aesgcm: invalid buffer overlap")
	}
	if len(src) == 0 {
		return
	}
	c.xorKeyStream(dst, src, iv)
}

type ctrScratch struct {
	ctr [16]byte
	ks  [8 * 16]byte
}

var ctrPool = sync.Pool{New: func() any { return new(ctrScratch) }}

// xorKeyStreamGeneric encrypts counter blocks one at a time with
// crypto/aes. The scratch buffers come from a pool so that nothing escapes
// per call.
func (c *CTR) xorKeyStreamGeneric(dst, src []byte, iv *[16]byte) {
	s := ctrPool.Get().(*ctrScratch)
	s.ctr = *iv
	ctr := binary.BigEndian.Uint32(s.ctr[12:])
	for len(src) > 0 {
		nb := min((len(src)+15)/16, len(s.ks)/16)
		for i := 0; i < nb; i++ {
			binary.BigEndian.PutUint32(s.ctr[12:], ctr)
			c.b.Encrypt(s.ks[16*i:16*i+16], s.ctr[:])
			ctr++
		}
		n := subtle.XORBytes(dst, src, s.ks[:min(len(src), 16*nb)])
		dst, src = dst[n:], src[n:]
	}
	clear(s.ks[:])
	ctrPool.Put(s)
}
