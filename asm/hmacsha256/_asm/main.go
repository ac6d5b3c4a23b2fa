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

var kMem, bswap, rev16, ctrAdd, outerPad Mem

// Registers of the SHA-256 kernels.
var (
	abef, cdgh, msg, tmp         = X1, X2, X0, X7
	m                            = []VecPhysical{X3, X4, X5, X6}
	saveABEF, saveCDGH, maskBE32 = X9, X10, X8
)

func main() {
	ConstraintExpr("!purego")

	kMem = GLOBL("sha256K", NOPTR|RODATA)
	for i, c := range k {
		DATA(4*i, U32(c))
	}
	// bswap32 reverses the bytes of each dword: the message words are
	// big-endian.
	bswap = GLOBL("bswap32", NOPTR|RODATA)
	DATA(0, U64(0x0405060700010203))
	DATA(8, U64(0x0c0d0e0f08090a0b))
	// rev16 reverses 16 bytes: the counter block's big-endian 32-bit counter
	// (bytes 12..15) becomes dword 0, where PADDD counts it modulo 2^32.
	rev16 = GLOBL("rev16", NOPTR|RODATA)
	DATA(0, U64(0x08090a0b0c0d0e0f))
	DATA(8, U64(0x0001020304050607))
	// ctrAdd: +0, +1, +2, +3 (the four blocks of a chunk), then +4.
	ctrAdd = GLOBL("ctrAdd", NOPTR|RODATA)
	for i := 0; i < 5; i++ {
		DATA(16*i, U64(uint64(i)))
		DATA(16*i+8, U64(0))
	}

	// outerPad: message words 8..15 of the outer hash's only block: the
	// padding after the 32-byte inner hash and the length, 96 bytes.
	outerPad = GLOBL("outerPad", NOPTR|RODATA)
	DATA(0, U32(0x80000000))
	DATA(28, U32(96*8))

	blockSHANI()
	expandKey128()
	ctrSHANI()
	finalSHANI()
	ctrPair()
	Generate()
}

// loadState converts h = A B C D | E F G H (dword 0 first), at RDI, to
// ABEF and CDGH.
func loadState() {
	MOVOU(Mem{Base: RDI}, abef)
	MOVOU(Mem{Base: RDI, Disp: 16}, cdgh)
	PSHUFD(U8(0xb1), abef, abef) // B A D C
	PSHUFD(U8(0x1b), cdgh, cdgh) // H G F E
	MOVO(abef, tmp)
	PALIGNR(U8(8), cdgh, abef)   // F E B A
	PBLENDW(U8(0xf0), tmp, cdgh) // H G D C
	MOVOU(bswap, maskBE32)
	LEAQ(kMem, RAX)
}

// storeState converts ABEF, CDGH back to h at RDI.
func storeState() {
	PSHUFD(U8(0x1b), abef, abef) // A B E F
	PSHUFD(U8(0xb1), cdgh, cdgh) // G H C D
	MOVO(abef, tmp)
	PBLENDW(U8(0xf0), cdgh, abef) // A B C D
	PALIGNR(U8(8), tmp, cdgh)     // E F G H
	MOVOU(abef, Mem{Base: RDI})
	MOVOU(cdgh, Mem{Base: RDI, Disp: 16})
}

// shaBlock returns the instructions that hash the block at RSI into
// ABEF/CDGH (the feed-forward included), in order, so that a caller can
// interleave other work between them.
func shaBlock() []func() {
	return shaBlockFrom(func(i int, dst VecPhysical) []func() {
		return []func(){
			func() { MOVOU(Mem{Base: RSI, Disp: 16 * i}, dst) },
			func() { PSHUFB(maskBE32, dst) },
		}
	})
}

// shaBlockFrom is shaBlock with the message groups 0..3 (words in dword
// order) put in place by load.
func shaBlockFrom(load func(i int, dst VecPhysical) []func()) []func() {
	var ops []func()
	emit := func(f func()) { ops = append(ops, f) }
	emit(func() { MOVO(abef, saveABEF) })
	emit(func() { MOVO(cdgh, saveCDGH) })
	// Group g holds W[4g .. 4g+3]; m[g%4] holds it from the step that
	// completes it until step g+4 reuses the register. The schedule runs one
	// step ahead of the rounds: step i completes group i+1 and starts group
	// i+3 (W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16]).
	for i := 0; i < 16; i++ {
		cur := m[i%4]
		if i < 4 {
			ops = append(ops, load(i, cur)...)
		}
		emit(func() { MOVO(cur, msg) })
		emit(func() { PADDD(Mem{Base: RAX, Disp: 16 * i}, msg) })
		emit(func() { SHA256RNDS2(msg, abef, cdgh) }) // cdgh <- new ABEF; old ABEF is the new CDGH
		if i >= 3 && i <= 14 {
			// Group i+1: m[(i+1)%4] already holds W[t-16] + σ0(W[t-15]).
			next := m[(i+1)%4]
			emit(func() { MOVO(cur, tmp) })
			emit(func() { PALIGNR(U8(4), m[(i+3)%4], tmp) }) // W[t-7]
			emit(func() { PADDD(tmp, next) })
			emit(func() { SHA256MSG2(cur, next) }) // + σ1(W[t-2])
		}
		emit(func() { PSHUFD(U8(0x0e), msg, msg) })
		emit(func() { SHA256RNDS2(msg, cdgh, abef) })
		if i >= 1 && i <= 12 {
			// Start group i+3 in the register of group i-1.
			emit(func() { SHA256MSG1(cur, m[(i+3)%4]) })
		}
	}
	emit(func() { PADDD(saveABEF, abef) })
	emit(func() { PADDD(saveCDGH, cdgh) })
	return ops
}

func blockSHANI() {
	TEXT("blockSHANI", NOSPLIT, "func(h *[8]uint32, p []byte)")
	Doc("blockSHANI hashes the len(p)/64 whole blocks of p into h.")
	Load(Param("h"), RDI)
	Load(Param("p").Base(), RSI)
	Load(Param("p").Len(), RDX)
	SHRQ(U8(6), RDX)
	JZ(LabelRef("done"))
	loadState()
	Label("loop")
	for _, op := range shaBlock() {
		op()
	}
	ADDQ(U8(64), RSI)
	DECQ(RDX)
	JNZ(LabelRef("loop"))
	storeState()
	Label("done")
	RET()
}

// expandKey128 is the AES-128 key expansion (FIPS 197 §5.2) with
// AESKEYGENASSIST: each round key is the previous one with its words
// prefix-XORed, XORed with SubWord(RotWord(last word)) ⊕ Rcon.
func expandKey128() {
	TEXT("expandKey128", NOSPLIT, "func(rk *[11 * 16]byte, key *[16]byte)")
	Doc("expandKey128 writes the 11 AES-128 round keys of key to rk.")
	Load(Param("rk"), RDI)
	Load(Param("key"), RSI)
	MOVOU(Mem{Base: RSI}, X1)
	MOVOU(X1, Mem{Base: RDI})
	for r, rcon := range []uint8{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1b, 0x36} {
		AESKEYGENASSIST(U8(rcon), X1, X2)
		PSHUFD(U8(0xff), X2, X2) // SubWord(RotWord(w3)) ⊕ Rcon in every dword
		MOVO(X1, X3)
		for range 3 {
			PSLLDQ(U8(4), X3)
			PXOR(X3, X1)
		}
		PXOR(X2, X1)
		MOVOU(X1, Mem{Base: RDI, Disp: 16 * (r + 1)})
	}
	RET()
}

// Registers of the AES part of ctrSHANI: four blocks and the byte-reversed
// counter block; round keys, masks and source bytes come from memory
// (VEX encodings take unaligned memory operands).
var (
	aesBlk  = []VecPhysical{X11, X12, X13, X14}
	aesCtr  = X15
	rkReg   = R8
	dstReg  = R10
	srcReg  = R11
	nEncReg = R12
)

// aesChunk returns the instructions that XOR 64 bytes at srcReg with the
// keystream of the next four counter blocks into dstReg and advance both
// pointers and the counter.
func aesChunk() []func() {
	var ops []func()
	emit := func(f func()) { ops = append(ops, f) }
	for j, b := range aesBlk {
		emit(func() { VPADDD(Mem{Base: RBX, Disp: 16 * j}, aesCtr, b) })
		emit(func() { VPSHUFB(rev16, b, b) })
		emit(func() { VPXOR(Mem{Base: rkReg}, b, b) })
	}
	emit(func() { VPADDD(Mem{Base: RBX, Disp: 64}, aesCtr, aesCtr) })
	for r := 1; r < 10; r++ {
		for _, b := range aesBlk {
			emit(func() { VAESENC(Mem{Base: rkReg, Disp: 16 * r}, b, b) })
		}
	}
	for _, b := range aesBlk {
		emit(func() { VAESENCLAST(Mem{Base: rkReg, Disp: 160}, b, b) })
	}
	for j, b := range aesBlk {
		emit(func() { VPXOR(Mem{Base: srcReg, Disp: 16 * j}, b, b) })
		emit(func() { VMOVDQU(b, Mem{Base: dstReg, Disp: 16 * j}) })
	}
	emit(func() { ADDQ(U8(64), srcReg) })
	emit(func() { ADDQ(U8(64), dstReg) })
	return ops
}

// ctrSHANI encrypts nEnc 64-byte chunks with AES-128-CTR and hashes nHash
// blocks with SHA-256 in one instruction stream. The SHA-256 rounds are a
// chain of SHA256RNDS2 latencies that leaves the vector ports mostly idle;
// the AES rounds of the other job fill them. The two jobs must be
// independent: the caller only hashes ciphertext written before the call or
// at least one iteration earlier.
func ctrSHANI() {
	TEXT("ctrSHANI", NOSPLIT, "func(rk *[11 * 16]byte, iv *[16]byte, dst, src *byte, nEnc int, h *[8]uint32, first, next *byte, nHash int)")
	Doc("ctrSHANI XORs nEnc*64 bytes of src with the AES-128-CTR keystream from",
		"counter block iv into dst and hashes nHash blocks into h: the block at",
		"first, then those from next on.")
	Load(Param("rk"), rkReg)
	Load(Param("iv"), RAX)
	Load(Param("dst"), dstReg)
	Load(Param("src"), srcReg)
	Load(Param("nEnc"), nEncReg)
	Load(Param("h"), RDI)
	Load(Param("first"), RSI)
	Load(Param("next"), R13)
	Load(Param("nHash"), RDX)
	VMOVDQU(Mem{Base: RAX}, aesCtr)
	VPSHUFB(rev16, aesCtr, aesCtr)
	LEAQ(ctrAdd, RBX)
	loadState()

	Label("both")
	TESTQ(nEncReg, nEncReg)
	JZ(LabelRef("hashOnly"))
	TESTQ(RDX, RDX)
	JZ(LabelRef("encOnly"))
	sha, aes := shaBlock(), aesChunk()
	// Spread the AES instructions evenly over the SHA-256 block.
	for i, j := 0, 0; i < len(sha) || j < len(aes); {
		if j < len(aes) && (i >= len(sha) || j*len(sha) <= i*len(aes)) {
			aes[j]()
			j++
		} else {
			sha[i]()
			i++
		}
	}
	MOVQ(R13, RSI)
	ADDQ(U8(64), R13)
	DECQ(RDX)
	DECQ(nEncReg)
	JMP(LabelRef("both"))

	Label("hashOnly")
	TESTQ(RDX, RDX)
	JZ(LabelRef("done"))
	for _, op := range shaBlock() {
		op()
	}
	MOVQ(R13, RSI)
	ADDQ(U8(64), R13)
	DECQ(RDX)
	JMP(LabelRef("hashOnly"))

	Label("encOnly")
	TESTQ(nEncReg, nEncReg)
	JZ(LabelRef("done"))
	for _, op := range aesChunk() {
		op()
	}
	DECQ(nEncReg)
	JMP(LabelRef("encOnly"))

	Label("done")
	storeState()
	RET()
}

// finalSHANI ends an HMAC: it hashes the padding block(s) of the inner
// hash, then the outer hash's one block, whose message is the inner hash
// (already in registers: after storeState's shuffle, ABCD and EFGH are
// message groups 0 and 1) and a constant padding, from the outer state.
func finalSHANI() {
	TEXT("finalSHANI", NOSPLIT, "func(inner *[8]uint32, pad *byte, nPad int, outer *[8]uint32, mac *[32]byte)")
	Doc("finalSHANI hashes nPad (1 or 2) blocks at pad into inner, then writes",
		"the outer hash of the result from state outer to mac (big-endian).")
	Load(Param("inner"), RDI)
	Load(Param("pad"), RSI)
	Load(Param("nPad"), RDX)
	Load(Param("outer"), R8)
	Load(Param("mac"), R9)
	loadState()
	Label("pad")
	for _, op := range shaBlock() {
		op()
	}
	ADDQ(U8(64), RSI)
	DECQ(RDX)
	JNZ(LabelRef("pad"))
	// Inner hash -> A B C D | E F G H in X11, X12 (message groups 0, 1).
	PSHUFD(U8(0x1b), abef, abef)
	PSHUFD(U8(0xb1), cdgh, cdgh)
	MOVO(abef, tmp)
	PBLENDW(U8(0xf0), cdgh, abef)
	PALIGNR(U8(8), tmp, cdgh)
	MOVO(abef, X11)
	MOVO(cdgh, X12)
	MOVQ(R8, RDI)
	loadState()
	ops := shaBlockFrom(func(i int, dst VecPhysical) []func() {
		switch i {
		case 0:
			return []func(){func() { MOVO(X11, dst) }}
		case 1:
			return []func(){func() { MOVO(X12, dst) }}
		default:
			return []func(){func() { MOVOU(outerPad.Offset(16*(i-2)), dst) }}
		}
	})
	for _, op := range ops {
		op()
	}
	PSHUFD(U8(0x1b), abef, abef)
	PSHUFD(U8(0xb1), cdgh, cdgh)
	MOVO(abef, tmp)
	PBLENDW(U8(0xf0), cdgh, abef)
	PALIGNR(U8(8), tmp, cdgh)
	PSHUFB(maskBE32, abef)
	PSHUFB(maskBE32, cdgh)
	MOVOU(abef, Mem{Base: R9})
	MOVOU(cdgh, Mem{Base: R9, Disp: 16})
	RET()
}

// ctrPair encrypts two 64-byte chunks with their own counter blocks, the
// eight AES blocks interleaved round by round: the chunks SealCTR needs
// before its stitched loop can start (the first whole chunk and the partial
// last one), at the latency of one.
func ctrPair() {
	TEXT("ctrPair", NOSPLIT, "func(rk *[11 * 16]byte, iv0 *[16]byte, dst0, src0 *byte, iv1 *[16]byte, p1 *byte)")
	Doc("ctrPair XORs 64 bytes at src0 with the keystream from counter block iv0",
		"into dst0, and 64 bytes at p1, in place, with the keystream from iv1.")
	Load(Param("rk"), RAX)
	Load(Param("iv0"), RBX)
	Load(Param("dst0"), RDI)
	Load(Param("src0"), RSI)
	Load(Param("iv1"), RCX)
	Load(Param("p1"), RDX)
	LEAQ(ctrAdd, R8)
	blk := []VecPhysical{X0, X1, X2, X3, X4, X5, X6, X7}
	for c, iv := range []Register{RBX, RCX} {
		ctr := []VecPhysical{X8, X9}[c]
		VMOVDQU(Mem{Base: iv}, ctr)
		VPSHUFB(rev16, ctr, ctr)
		for j := 0; j < 4; j++ {
			b := blk[4*c+j]
			VPADDD(Mem{Base: R8, Disp: 16 * j}, ctr, b)
			VPSHUFB(rev16, b, b)
		}
	}
	VMOVDQU(Mem{Base: RAX}, X10)
	for _, b := range blk {
		VPXOR(X10, b, b)
	}
	for r := 1; r < 10; r++ {
		VMOVDQU(Mem{Base: RAX, Disp: 16 * r}, X10)
		for _, b := range blk {
			VAESENC(X10, b, b)
		}
	}
	VMOVDQU(Mem{Base: RAX, Disp: 160}, X10)
	for _, b := range blk {
		VAESENCLAST(X10, b, b)
	}
	for j := 0; j < 4; j++ {
		VPXOR(Mem{Base: RSI, Disp: 16 * j}, blk[j], blk[j])
		VMOVDQU(blk[j], Mem{Base: RDI, Disp: 16 * j})
	}
	for j := 0; j < 4; j++ {
		VPXOR(Mem{Base: RDX, Disp: 16 * j}, blk[4+j], blk[4+j])
		VMOVDQU(blk[4+j], Mem{Base: RDX, Disp: 16 * j})
	}
	RET()
}
