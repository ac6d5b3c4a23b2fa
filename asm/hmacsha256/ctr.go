package hmacsha256

import "encoding/binary"

// CTR is an AES-128 key schedule for [Key.SealCTR].
type CTR struct {
	rk [11 * 16]byte
}

// NewCTR returns the AES-128 key schedule of key for [Key.SealCTR], or nil
// where this build has no stitched kernel (amd64 with SHA-NI, AES-NI and
// AVX, without the purego tag); then encrypt separately and use [Key.Sum].
func NewCTR(key *[16]byte) *CTR { return newCTR(key) }

// SealCTR is AES-128-CTR encryption and HMAC-SHA256 in one pass, the seal
// of the SFrame AES-CTR+HMAC suites (RFC 9605 §4.5.1). It XORs pt with the
// keystream of c from counter block iv (whose last 4 bytes are a 32-bit
// big-endian counter, incremented modulo 2^32) into ct[:len(pt)], and
// writes to mac the HMAC-SHA256 of prefix[0] || prefix[1] || ... || ct. It
// hashes each 64-byte block of ciphertext in the same instruction stream
// that encrypts the next one, so that the AES rounds run in the slots the
// SHA-256 round latency leaves idle.
//
// ct must be at least as long as pt and may alias it exactly, but must not
// overlap it otherwise, nor overlap any prefix. SealCTR reports false, and
// does nothing, when c is nil or the stitched kernel is not in use (the
// caller then encrypts and calls Sum).
func (k *Key) SealCTR(mac *[Size]byte, c *CTR, iv *[16]byte, ct, pt []byte, prefix ...[]byte) bool {
	if c == nil || !stitchEnabled() {
		return false
	}
	n := len(pt)
	ct = ct[:n]
	d := digest{h: k.inner, n: BlockSize}
	for _, p := range prefix {
		d.write(p)
	}
	d.n += uint64(n)
	full := n &^ (BlockSize - 1)
	// Counter blocks are independent: the first whole chunk and the
	// partial last one (through a buffer) are encrypted first, together,
	// so that the stitched loop below only hashes ciphertext written at
	// least one iteration earlier.
	var ctr [16]byte
	head := min(full, BlockSize)
	if n > 0 {
		var tb, scratch [BlockSize]byte
		tail := copy(tb[:], pt[full:])
		counterAt(&ctr, iv, full/16)
		dst0, src0 := &scratch[0], &scratch[0]
		if head > 0 {
			dst0, src0 = &ct[0], &pt[0]
		}
		ctrPairBlocks(c, iv, dst0, src0, &ctr, &tb[0])
		copy(ct[full:], tb[:tail])
	}
	// The block that straddles the prefix and the ciphertext (its
	// ciphertext is in chunk 0 or the tail) is the stitched loop's first.
	rest := ct
	var first, next *byte
	nHash := 0
	if d.nb > 0 {
		c := copy(d.buf[d.nb:BlockSize], rest)
		d.nb += c
		rest = rest[c:]
		if d.nb == BlockSize {
			first, nHash, d.nb = &d.buf[0], 1, 0
		}
	}
	nRest := len(rest) / BlockSize
	switch {
	case nRest == 0:
	case first == nil && nRest > 1:
		first, next = &rest[0], &rest[BlockSize]
	case first == nil:
		first = &rest[0]
	default:
		next = &rest[0]
	}
	nHash += nRest
	if nEnc := (full - head) / BlockSize; nEnc > 0 || nHash > 0 {
		var dst, src *byte
		if nEnc > 0 {
			dst, src = &ct[head], &pt[head]
		}
		counterAt(&ctr, iv, head/16)
		ctrBlocks(c, &ctr, dst, src, nEnc, &d.h, first, next, nHash)
	}
	if d.nb == 0 {
		d.nb = copy(d.buf[:], rest[nRest*BlockSize:])
	}
	d.sum(k, mac)
	return true
}

// counterAt sets ctr to iv advanced by n blocks (the 32-bit counter wraps).
func counterAt(ctr, iv *[16]byte, n int) {
	*ctr = *iv
	binary.BigEndian.PutUint32(ctr[12:], binary.BigEndian.Uint32(iv[12:])+uint32(n))
}
