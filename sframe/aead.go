package sframe

import (
	"crypto/cipher"
	"fmt"

	"github.com/moqsframe/moqsframe/asm/aesgcm"
)

// NewAEAD returns the suite's AEAD keyed with a raw sframe_key of
// suite.KeySize() bytes: AES-GCM, or the AES-CTR+HMAC construction of
// RFC 9605 §4.5.1. Most callers want [Sender] and [Receiver], which derive
// the key; NewAEAD exists for test vectors and for callers that batch
// objects themselves. The AEAD is safe for concurrent use.
func NewAEAD(suite CipherSuite, key []byte) (cipher.AEAD, error) {
	p, err := suite.params()
	if err != nil {
		return nil, err
	}
	if len(key) != p.nk {
		return nil, fmt.Errorf("%w: %s needs a %d-byte key, got %d", ErrInvalidKey, suite, p.nk, len(key))
	}
	return newAEAD(p, key)
}

// newAEAD returns the suite's AEAD keyed with sframe_key. It is the one seam
// between SFrame and its primitives: AES-GCM comes from newAESGCM, which the
// assembly fast paths replace; the CTR+HMAC suites use ctrHMAC.
func newAEAD(p *suiteParams, key []byte) (cipher.AEAD, error) {
	if p.gcm {
		return newAESGCM(key)
	}
	return newCTRHMAC(p, key)
}

// newAESGCM returns AES-GCM with a 12-byte nonce and a 16-byte tag: the
// VAES fast paths where the CPU has them, crypto/cipher elsewhere and under
// the purego build tag.
func newAESGCM(key []byte) (cipher.AEAD, error) { return aesgcm.New(key) }
