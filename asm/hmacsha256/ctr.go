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
// that encrypts a later one, so that the AES rounds run in the slots the
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
	var ctr [16]byte
	// Counter blocks are independent: encrypt the partial last chunk first,
	// through a buffer, then the first two whole chunks, so that the
	// stitched loop below always hashes ciphertext written at least one
	// iteration earlier.
	if tail := n - full; tail > 0 {
		var buf [BlockSize]byte
		copy(buf[:], pt[full:])
		counterAt(&ctr, iv, full/16)
		ctrBlocks(c, &ctr, &buf[0], &buf[0], 1, &d.h, nil, 0)
		copy(ct[full:], buf[:tail])
		clear(buf[:])
	}
	head := min(full, 2*BlockSize)
	if head > 0 {
		ctrBlocks(c, iv, &ct[0], &pt[0], head/BlockSize, &d.h, nil, 0)
	}
	// The block that straddles the prefix and the ciphertext.
	rest := ct
	if d.nb > 0 {
		c := copy(d.buf[d.nb:BlockSize], rest)
		d.nb += c
		rest = rest[c:]
		if d.nb == BlockSize {
			block(&d.h, d.buf[:BlockSize])
			d.nb = 0
		}
	}
	nHash := len(rest) / BlockSize
	if nEnc := (full - head) / BlockSize; nEnc > 0 || nHash > 0 {
		var dst, src, hp *byte
		if nEnc > 0 {
			dst, src = &ct[head], &pt[head]
		}
		if nHash > 0 {
			hp = &rest[0]
		}
		counterAt(&ctr, iv, head/16)
		ctrBlocks(c, &ctr, dst, src, nEnc, &d.h, hp, nHash)
	}
	if d.nb == 0 {
		d.nb = copy(d.buf[:], rest[nHash*BlockSize:])
	}
	d.finish()
	k.outerSum(mac, &d.h)
	return true
}

// counterAt sets ctr to iv advanced by n blocks (the 32-bit counter wraps).
func counterAt(ctr, iv *[16]byte, n int) {
	*ctr = *iv
	binary.BigEndian.PutUint32(ctr[12:], binary.BigEndian.Uint32(iv[12:])+uint32(n))
}
