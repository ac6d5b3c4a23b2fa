package sframe

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/moqsframe/moqsframe/asm/aesgcm"
	"github.com/moqsframe/moqsframe/internal/alias"
)

// key is the derived state for one KID: the keyed AEAD and the salt. It is
// immutable and safe for concurrent use.
type key struct {
	suite  CipherSuite
	kid    uint64
	tag    int
	salt   [nonceSize]byte
	saltHi uint32 // salt[:4] as a big-endian integer
	saltLo uint64 // salt[4:] as a big-endian integer: nonce = salt[:4] || saltLo^CTR
	aead   cipher.AEAD
	// gcm is aead when it is the AES-GCM of package aesgcm. Called
	// directly rather than through the interface, it keeps the nonce and
	// AAD from escaping, so they can live on the stack.
	gcm *aesgcm.AEAD
	// ch is aead when it is a CTR+HMAC suite: its sealParts/openParts take
	// header and metadata apart, so no AAD is joined per call.
	ch *ctrHMAC
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
	k.gcm, _ = aead.(*aesgcm.AEAD)
	k.ch, _ = aead.(*ctrHMAC)
	copy(k.salt[:], salt)
	k.saltHi = binary.BigEndian.Uint32(salt)
	k.saltLo = binary.BigEndian.Uint64(salt[4:])
	return k, nil
}

// scratch holds the per-operation nonce and AAD (header || metadata) where
// the stack cannot: for the CTR+HMAC suites, whose AEAD is reached through
// an interface (arguments escape), and for AADs longer than stackAAD.
type scratch struct {
	nonce [nonceSize]byte
	aad   []byte
}

var scratchPool = sync.Pool{New: func() any { return &scratch{aad: make([]byte, 0, 256)} }}

// stackAAD is the longest AAD (header || metadata) built on the stack. A MoQ
// identity of a few short names fits with room to spare.
const stackAAD = 128

// putNonce writes salt XOR CTR (RFC 9605 §4.4.3), the CTR as a 12-byte
// big-endian value, to b[:nonceSize] and returns that slice. The CTR is
// below 2^64, so only the salt's low 8 bytes change.
func (k *key) putNonce(b []byte, ctr uint64) []byte {
	b = b[:nonceSize]
	binary.BigEndian.PutUint32(b, k.saltHi)
	binary.BigEndian.PutUint64(b[4:], k.saltLo^ctr)
	return b
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
	// The header must be written after the shift above: it may overwrite
	// the plaintext's old first bytes.
	putHeader(out, k.kid, ctr)
	if k.gcm != nil && hlen+len(metadata) <= stackAAD {
		var nonce [nonceSize]byte
		var aad [stackAAD]byte
		putHeader(aad[:], k.kid, ctr)
		n := hlen + copy(aad[hlen:], metadata)
		k.gcm.Seal(out[hlen:hlen], k.putNonce(nonce[:], ctr), plaintext, aad[:n])
		return ret, nil
	}
	if k.ch != nil {
		var nonce [nonceSize]byte
		k.putNonce(nonce[:], ctr)
		k.ch.sealParts(out[hlen:], nonce, plaintext, out[:hlen], metadata)
		return ret, nil
	}
	s := scratchPool.Get().(*scratch)
	s.aad = append(append(s.aad[:0], out[:hlen]...), metadata...)
	k.aead.Seal(out[hlen:hlen], k.putNonce(s.nonce[:], ctr), plaintext, s.aad)
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
	ptLen := len(body) - k.tag
	ret, out := alias.SliceForAppend(dst, ptLen)
	// Output that overlaps the ciphertext at another offset (the usual
	// in-place case, shifted by the header) is decrypted in place, then moved.
	shift := alias.InexactOverlap(out, body)
	to := out[:0]
	if shift {
		to = body[:0]
	}
	var err error
	if k.gcm != nil && len(hdr)+len(metadata) <= stackAAD {
		var nonce [nonceSize]byte
		var aad [stackAAD]byte
		n := copy(aad[:], hdr)
		n += copy(aad[n:], metadata)
		_, err = k.gcm.Open(to, k.putNonce(nonce[:], h.CTR), body, aad[:n])
	} else if k.ch != nil {
		var nonce [nonceSize]byte
		k.putNonce(nonce[:], h.CTR)
		if !k.ch.openParts(to[:ptLen], nonce, body, hdr, metadata) {
			err = ErrAuthentication
		}
	} else {
		s := scratchPool.Get().(*scratch)
		s.aad = append(append(s.aad[:0], hdr...), metadata...)
		_, err = k.aead.Open(to, k.putNonce(s.nonce[:], h.CTR), body, s.aad)
		scratchPool.Put(s)
	}
	if err != nil {
		return nil, ErrAuthentication
	}
	if shift {
		copy(out, body[:ptLen])
	}
	return ret, nil
}
