package sframe

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/moqsframe/moqsframe/internal/alias"
)

// key is the derived state for one KID: the keyed AEAD and the salt. It is
// immutable and safe for concurrent use.
type key struct {
	suite  CipherSuite
	kid    uint64
	tag    int
	salt   [nonceSize]byte
	saltLo uint64 // salt[4:] as a big-endian integer: nonce = salt[:4] || saltLo^CTR
	aead   cipher.AEAD
}

func newKey(suite CipherSuite, kid uint64, baseKey []byte) (*key, error) {
	p, err := suite.params()
	if err != nil {
		return nil, err
	}
	sk, salt, err := DeriveKeySalt(suite, kid, baseKey)
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(p, sk)
	clear(sk)
	if err != nil {
		return nil, err
	}
	k := &key{suite: suite, kid: kid, tag: p.nt, aead: aead}
	copy(k.salt[:], salt)
	k.saltLo = binary.BigEndian.Uint64(salt[4:])
	return k, nil
}

// scratch holds the per-operation nonce and AAD (header || metadata). Both
// must be in memory that outlives the interface call, so they come from a
// pool instead of the stack.
type scratch struct {
	nonce [nonceSize]byte
	aad   []byte
}

var scratchPool = sync.Pool{New: func() any { return &scratch{aad: make([]byte, 0, 256)} }}

// nonce sets s.nonce to salt XOR CTR, the CTR as a 12-byte big-endian value.
func (k *key) nonce(s *scratch, ctr uint64) []byte { return k.appendNonce(s.nonce[:0], ctr) }

// appendNonce appends salt XOR CTR (RFC 9605 §4.4.3) to dst. The CTR is
// below 2^64, so only the salt's low 8 bytes change.
func (k *key) appendNonce(dst []byte, ctr uint64) []byte {
	dst = append(dst, k.salt[:4]...)
	return binary.BigEndian.AppendUint64(dst, k.saltLo^ctr)
}

// seal appends header || AEAD(plaintext) to dst. The caller guarantees that
// ctr was never used with this key. plaintext may alias dst's free capacity
// at any offset; it is moved into place first.
func (k *key) seal(dst []byte, ctr uint64, metadata, plaintext []byte) ([]byte, error) {
	if uint64(len(plaintext)) > maxPlaintext {
		return nil, ErrTooLarge
	}
	hlen := HeaderLen(k.kid, ctr)
	ret, out := alias.SliceForAppend(dst, hlen+len(plaintext)+k.tag)
	body := out[hlen : hlen+len(plaintext)]
	if len(plaintext) > 0 && alias.AnyOverlap(out, plaintext) && &body[0] != &plaintext[0] {
		// In place with the plaintext not where the ciphertext goes:
		// shift it (copy is memmove) so the AEAD sees an exact overlap.
		copy(body, plaintext)
		plaintext = body
	}
	s := scratchPool.Get().(*scratch)
	// The header must be written after the shift above: it may overwrite
	// the plaintext's old first bytes.
	AppendHeader(out[:0], k.kid, ctr)
	s.aad = append(append(s.aad[:0], out[:hlen]...), metadata...)
	k.aead.Seal(out[hlen:hlen], k.nonce(s, ctr), plaintext, s.aad)
	scratchPool.Put(s)
	return ret, nil
}

// open authenticates and decrypts body, the ciphertext after a header that
// was parsed as h from hdr. It appends the plaintext to dst. dst may alias
// the ciphertext in place (dst = ciphertext[:0]).
func (k *key) open(dst []byte, hdr []byte, h Header, metadata, body []byte) ([]byte, error) {
	if len(body) < k.tag {
		return nil, fmt.Errorf("%w: %d bytes, tag is %d", ErrTruncated, len(body), k.tag)
	}
	s := scratchPool.Get().(*scratch)
	s.aad = append(append(s.aad[:0], hdr...), metadata...)
	nonce := k.nonce(s, h.CTR)
	ptLen := len(body) - k.tag
	ret, out := alias.SliceForAppend(dst, ptLen)
	var err error
	if alias.InexactOverlap(out, body) {
		// Output overlaps the ciphertext at another offset (the usual
		// in-place case, shifted by the header): decrypt in place, then move.
		var pt []byte
		if pt, err = k.aead.Open(body[:0], nonce, body, s.aad); err == nil {
			copy(out, pt)
		}
	} else {
		_, err = k.aead.Open(out[:0], nonce, body, s.aad)
	}
	scratchPool.Put(s)
	if err != nil {
		return nil, ErrAuthentication
	}
	return ret, nil
}
