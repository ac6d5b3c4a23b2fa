//go:build !amd64 || purego

package aesgcm

type gcmKey struct{}

func newKey(key []byte) *gcmKey { return nil }

// No alternatives are registered: crypto/cipher (the base) is the only path.

func (a *AEAD) seal(out, nonce, plaintext, aad []byte) {
	a.sealGeneric(out, nonce, plaintext, aad)
}

func (a *AEAD) open(out, nonce, ciphertext, aad []byte) bool {
	return a.openGeneric(out, nonce, ciphertext, aad)
}

func (a *AEAD) sealBatch(msgs []Message) { a.sealBatchGeneric(msgs) }

func (a *AEAD) sealList(d []batchDesc) { a.sealDescsGeneric(d) }

func (a *AEAD) openList(l *OpenList) int { return a.openDescsGeneric(l) }

func (a *AEAD) openBatch(msgs []Message) int { return a.openBatchWith(msgs, a.openStd) }

func (c *CTR) xorKeyStream(dst, src []byte, iv *[16]byte) {
	c.xorKeyStreamGeneric(dst, src, iv)
}
