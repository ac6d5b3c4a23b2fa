// Command _asm generates hmacsha256_amd64.s: the SHA-256 block function
// (FIPS 180-4 §6.2.2) with the SHA extensions (SHA-NI).
//
// SHA256RNDS2 runs two rounds on a state split as ABEF and CDGH (A in the
// top dword); the kernel converts the caller's h[0..7] to that split on entry
// and back on return. The message schedule (SHA256MSG1/MSG2) keeps four
// 4-word groups in rotation; it does not depend on the state, so the
// out-of-order core runs it under the latency-bound chain of rounds.
//
// Run with: go run . -out ../hmacsha256_amd64.s
package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

//go:generate go run . -out ../hmacsha256_amd64.s

// k is the SHA-256 round constant table (FIPS 180-4 §4.2.2).
var k = [64]uint32{
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

func main() {
	ConstraintExpr("!purego")

	kMem := GLOBL("sha256K", NOPTR|RODATA)
	for i, c := range k {
		DATA(4*i, U32(c))
	}
	// bswap32 reverses the bytes of each dword: the message words are
	// big-endian.
	bswap := GLOBL("bswap32", NOPTR|RODATA)
	DATA(0, U64(0x0405060700010203))
	DATA(8, U64(0x0c0d0e0f08090a0b))

	TEXT("blockSHANI", NOSPLIT, "func(h *[8]uint32, p []byte)")
	Doc("blockSHANI hashes the len(p)/64 whole blocks of p into h.")
	Load(Param("h"), RDI)
	Load(Param("p").Base(), RSI)
	Load(Param("p").Len(), RDX)
	SHRQ(U8(6), RDX)
	JZ(LabelRef("done"))

	abef, cdgh, msg, tmp := X1, X2, X0, X7
	m := []VecPhysical{X3, X4, X5, X6}
	saveABEF, saveCDGH, mask := X9, X10, X8

	// h = A B C D | E F G H (dword 0 first) -> ABEF, CDGH.
	MOVOU(Mem{Base: RDI}, abef)
	MOVOU(Mem{Base: RDI, Disp: 16}, cdgh)
	PSHUFD(U8(0xb1), abef, abef) // B A D C
	PSHUFD(U8(0x1b), cdgh, cdgh) // H G F E
	MOVO(abef, tmp)
	PALIGNR(U8(8), cdgh, abef)   // F E B A
	PBLENDW(U8(0xf0), tmp, cdgh) // H G D C
	MOVOU(bswap, mask)
	LEAQ(kMem, RAX)

	Label("loop")
	MOVO(abef, saveABEF)
	MOVO(cdgh, saveCDGH)
	// Group g holds W[4g .. 4g+3]; m[g%4] holds it from the step that
	// completes it until step g+4 reuses the register. The schedule runs one
	// step ahead of the rounds: step i completes group i+1 and starts group
	// i+3 (W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16]).
	for i := 0; i < 16; i++ {
		cur := m[i%4]
		if i < 4 {
			MOVOU(Mem{Base: RSI, Disp: 16 * i}, cur)
			PSHUFB(mask, cur)
		}
		MOVO(cur, msg)
		PADDD(Mem{Base: RAX, Disp: 16 * i}, msg)
		SHA256RNDS2(msg, abef, cdgh) // cdgh <- new ABEF; old ABEF is the new CDGH
		if i >= 3 && i <= 14 {
			// Group i+1: m[(i+1)%4] already holds W[t-16] + σ0(W[t-15]).
			next := m[(i+1)%4]
			MOVO(cur, tmp)
			PALIGNR(U8(4), m[(i+3)%4], tmp) // W[t-7]
			PADDD(tmp, next)
			SHA256MSG2(cur, next) // + σ1(W[t-2])
		}
		PSHUFD(U8(0x0e), msg, msg)
		SHA256RNDS2(msg, cdgh, abef)
		if i >= 1 && i <= 12 {
			// Start group i+3 in the register of group i-1.
			SHA256MSG1(cur, m[(i+3)%4])
		}
	}
	PADDD(saveABEF, abef)
	PADDD(saveCDGH, cdgh)
	ADDQ(U8(64), RSI)
	DECQ(RDX)
	JNZ(LabelRef("loop"))

	// ABEF, CDGH -> A B C D | E F G H.
	PSHUFD(U8(0x1b), abef, abef) // A B E F
	PSHUFD(U8(0xb1), cdgh, cdgh) // G H C D
	MOVO(abef, tmp)
	PBLENDW(U8(0xf0), cdgh, abef) // A B C D
	PALIGNR(U8(8), tmp, cdgh)     // E F G H
	MOVOU(abef, Mem{Base: RDI})
	MOVOU(cdgh, Mem{Base: RDI, Disp: 16})

	Label("done")
	RET()

	Generate()
}
