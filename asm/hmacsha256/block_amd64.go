//go:build amd64 && !purego

package hmacsha256

import (
	"sync/atomic"

	"github.com/klauspost/cpuid/v2"

	"github.com/moqsframe/moqsframe/internal/impl"
)

//go:noescape
func blockSHANI(h *[8]uint32, p []byte)

// useSHANI is the switch tests and benchmarks flip through internal/impl;
// it starts as whether the CPU has the SHA extensions (and the SSE4.1 and
// SSSE3 shuffles the kernel uses).
var useSHANI atomic.Bool

func init() {
	useSHANI.Store(cpuid.CPU.Supports(cpuid.SHA, cpuid.SSE4, cpuid.SSSE3))
	impl.Register("hmacsha256", "shani", &useSHANI)
}

// block hashes the len(p)/64 whole blocks of p into h. It is a direct call,
// not a function value, so that h and p stay on the caller's stack.
func block(h *[8]uint32, p []byte) {
	if useSHANI.Load() {
		blockSHANI(h, p)
	} else {
		blockGeneric(h, p)
	}
}

//go:noescape
func expandKey128(rk *[11 * 16]byte, key *[16]byte)

//go:noescape
func ctrSHANI(rk *[11 * 16]byte, iv *[16]byte, dst, src *byte, nEnc int, h *[8]uint32, first, next *byte, nHash int)

//go:noescape
func finalSHANI(inner *[8]uint32, pad *byte, nPad int, outer *[8]uint32, mac *[32]byte)

// final hashes the padding blocks pad into inner and writes the HMAC from
// outer to mac in one kernel call; it reports false without SHA-NI.
func final(inner *[8]uint32, pad []byte, outer *[8]uint32, mac *[Size]byte) bool {
	if !useSHANI.Load() {
		return false
	}
	finalSHANI(inner, &pad[0], len(pad)/BlockSize, outer, mac)
	return true
}

// hasStitch: the stitched AES-CTR + SHA-256 kernel also needs AES-NI and
// AVX (its AES half uses VEX encodings).
var hasStitch = cpuid.CPU.Supports(cpuid.SHA, cpuid.SSE4, cpuid.SSSE3, cpuid.AESNI, cpuid.AVX)

func newCTR(key *[16]byte) *CTR {
	if !hasStitch {
		return nil
	}
	c := new(CTR)
	expandKey128(&c.rk, key)
	return c
}

func stitchEnabled() bool { return hasStitch && useSHANI.Load() }

//go:noescape
func ctrPair(rk *[11 * 16]byte, iv0 *[16]byte, dst0, src0 *byte, iv1 *[16]byte, p1 *byte)

func ctrPairBlocks(c *CTR, iv0 *[16]byte, dst0, src0 *byte, iv1 *[16]byte, p1 *byte) {
	ctrPair(&c.rk, iv0, dst0, src0, iv1, p1)
}

func ctrBlocks(c *CTR, iv *[16]byte, dst, src *byte, nEnc int, h *[8]uint32, first, next *byte, nHash int) {
	ctrSHANI(&c.rk, iv, dst, src, nEnc, h, first, next, nHash)
}
