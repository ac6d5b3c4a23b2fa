// Command _asm generates aesgcm_amd64.s: AES-GCM with VAES and VPCLMULQDQ on
// zmm (AVX-512) and ymm (AVX2) registers.
//
// GHASH uses the byte-swapped representation (as in Go's crypto/internal/
// fips140/aes/gcm): every block is byte-reversed with VPSHUFB, the hash key is
// stored as H·x (so that the off-by-one of the reflected carry-less product
// cancels), and a 256-bit product LO/MI/HI is reduced with two folds by the
// constant 0xc2000000_00000000 (x^63+x^62+x^57 reflected).
//
// Run with: go run . -out ../aesgcm_amd64.s
package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

//go:generate go run . -out ../aesgcm_amd64.s

// Layout of gcmKey (see aesgcm_amd64.go; checked by a test).
const (
	offNR   = 0             // uint64 number of rounds (10 or 14)
	offRK   = 16            // [15][16]byte round keys
	offRK2  = 256           // [15][32]byte round keys, duplicated for ymm
	offHtab = 736           // [16][16]byte H^16..H^1 (times x, byte-swapped), then 256 zero bytes
	offHkar = offHtab + 512 // [16][16]byte lo^hi of each power of htab (both qwords), for Karatsuba
	keySize = offHkar + 256

	// batchDesc: out, in *byte; n int; aad *byte; aadLen int; nonce, tag *byte
	descSize = 56
)

var labelN int

func lbl(s string) string {
	labelN++
	return fmt.Sprintf("%s_%d", s, labelN)
}

func main() {
	ConstraintExpr("!purego")
	initKey()
	ctrAVX512()
	ctrAVX2()
	for _, batch := range []bool{false, true} {
		gcmAVX512(true, batch)
		gcmAVX512(false, batch)
		gcmAVX2(true, batch)
		gcmAVX2(false, batch)
	}
	Generate()
}

var gfpoly32, tailMask, ctrInit0 Mem

var bswapMem, gfpolyMem, ctrInit4, ctrInc4, ctrInit2, ctrInc2 Mem

func consts() {
	bswapMem = GLOBL("bswapMask", NOPTR|RODATA)
	for i := 0; i < 4; i++ {
		DATA(16*i, U64(0x08090a0b0c0d0e0f))
		DATA(16*i+8, U64(0x0001020304050607))
	}
	gfpolyMem = GLOBL("gfpoly", NOPTR|RODATA)
	DATA(0, U64(1))
	DATA(8, U64(0xc200000000000000))
	// ctrInit4: lanes get +1,+2,+3,+4 in dword 0; ctrInc4: +4 in every lane.
	ctrInit4 = GLOBL("ctrInit4", NOPTR|RODATA)
	for i := 0; i < 4; i++ {
		DATA(16*i, U64(uint64(i+1)))
		DATA(16*i+8, U64(0))
	}
	ctrInit0 = GLOBL("ctrInit0", NOPTR|RODATA)
	for i := 0; i < 4; i++ {
		DATA(16*i, U64(uint64(i)))
		DATA(16*i+8, U64(0))
	}
	ctrInc4 = GLOBL("ctrInc4", NOPTR|RODATA)
	for i := 0; i < 4; i++ {
		DATA(16*i, U64(4))
		DATA(16*i+8, U64(0))
	}
	gfpoly32 = GLOBL("gfpoly32", NOPTR|RODATA)
	for i := 0; i < 2; i++ {
		DATA(16*i, U64(1))
		DATA(16*i+8, U64(0xc200000000000000))
	}
	// tailMask: 32 bytes of 0xff then 32 zero bytes; loading 32 bytes at
	// offset 32-r gives a mask of the first r bytes.
	tailMask = GLOBL("tailMask", NOPTR|RODATA)
	for i := 0; i < 8; i++ {
		if i < 4 {
			DATA(8*i, U64(0xffffffffffffffff))
		} else {
			DATA(8*i, U64(0))
		}
	}
	ctrInit2 = GLOBL("ctrInit2", NOPTR|RODATA)
	for i := 0; i < 2; i++ {
		DATA(16*i, U64(uint64(i+1)))
		DATA(16*i+8, U64(0))
	}
	ctrInc2 = GLOBL("ctrInc2", NOPTR|RODATA)
	for i := 0; i < 2; i++ {
		DATA(16*i, U64(2))
		DATA(16*i+8, U64(0))
	}
}

// ---------------------------------------------------------------------------
// Key setup: AES key expansion (AES-NI), hash key, powers of H.

func initKey() {
	consts()
	TEXT("initKeyAsm", NOSPLIT, "func(k *byte, key []byte)")
	Doc("initKeyAsm expands key into k's round keys and computes H^1..H^16.")
	kp := RDI
	key := RSI
	klen := RCX
	Load(Param("k"), kp)
	Load(Param("key").Base(), key)
	Load(Param("key").Len(), klen)

	MOVOU(Mem{Base: key}, X0)
	MOVOU(X0, Mem{Base: kp, Disp: offRK})
	CMPQ(klen, Imm(32))
	JE(LabelRef("exp256"))

	// AES-128
	MOVQ(U32(10), RAX)
	MOVQ(RAX, Mem{Base: kp, Disp: offNR})
	rcon := []uint8{1, 2, 4, 8, 16, 32, 64, 128, 0x1b, 0x36}
	for i, rc := range rcon {
		AESKEYGENASSIST(U8(rc), X0, X1)
		PSHUFD(U8(0xff), X1, X1)
		expandStep(X0, X1)
		MOVOU(X0, Mem{Base: kp, Disp: offRK + 16*(i+1)})
	}
	JMP(LabelRef("expDone"))

	Label("exp256")
	MOVQ(U32(14), RAX)
	MOVQ(RAX, Mem{Base: kp, Disp: offNR})
	MOVOU(Mem{Base: key, Disp: 16}, X2)
	MOVOU(X2, Mem{Base: kp, Disp: offRK + 16})
	n := 2
	for i := 0; i < 7; i++ {
		AESKEYGENASSIST(U8(1<<i), X2, X1)
		PSHUFD(U8(0xff), X1, X1)
		expandStep(X0, X1)
		MOVOU(X0, Mem{Base: kp, Disp: offRK + 16*n})
		n++
		if n == 15 {
			break
		}
		AESKEYGENASSIST(U8(0), X0, X1)
		PSHUFD(U8(0xaa), X1, X1)
		expandStep(X2, X1)
		MOVOU(X2, Mem{Base: kp, Disp: offRK + 16*n})
		n++
	}
	Label("expDone")

	// Duplicated round keys for the ymm kernel.
	for i := 0; i < 15; i++ {
		VBROADCASTI128(Mem{Base: kp, Disp: offRK + 16*i}, Y0)
		VMOVDQU(Y0, Mem{Base: kp, Disp: offRK2 + 32*i})
	}

	// H = AES_K(0)
	// (VEX forms: memory operands need no alignment.)
	VMOVDQU(Mem{Base: kp, Disp: offRK}, X0)
	for i := 1; i < 10; i++ {
		VAESENC(Mem{Base: kp, Disp: offRK + 16*i}, X0, X0)
	}
	CMPQ(Mem{Base: kp, Disp: offNR}, Imm(10))
	JE(LabelRef("hLast"))
	for i := 10; i < 14; i++ {
		VAESENC(Mem{Base: kp, Disp: offRK + 16*i}, X0, X0)
	}
	Label("hLast")
	MOVQ(Mem{Base: kp, Disp: offNR}, RAX)
	SHLQ(Imm(4), RAX)
	VAESENCLAST(Mem{Base: kp, Index: RAX, Scale: 1, Disp: offRK}, X0, X0)

	// H·x in the byte-swapped representation.
	MOVOU(bswapMem, X7)
	MOVOU(gfpolyMem, X6)
	PSHUFB(X7, X0)
	PSHUFD(U8(0xff), X0, X1)
	MOVOU(X0, X2)
	PSRAL(U8(31), X1)
	PAND(X6, X1)
	PSRLL(U8(31), X2)
	PSLLDQ(U8(4), X2)
	PSLLL(U8(1), X0)
	PXOR(X1, X0)
	PXOR(X2, X0)

	// Powers: htab[16-i] = H^i.
	MOVOU(X0, Mem{Base: kp, Disp: offHtab + 16*15})
	MOVOU(X0, X5) // X5 = running power
	for i := 2; i <= 16; i++ {
		// X5 = X5 * X0
		MOVOU(X5, X1)
		PCLMULQDQ(U8(0x00), X0, X1) // LO
		MOVOU(X5, X3)
		PCLMULQDQ(U8(0x11), X0, X3) // HI
		MOVOU(X5, X2)
		PCLMULQDQ(U8(0x01), X0, X2)
		PCLMULQDQ(U8(0x10), X0, X5)
		PXOR(X5, X2) // MI
		// fold LO into MI
		MOVOU(X6, X4)
		PCLMULQDQ(U8(0x01), X1, X4)
		PSHUFD(U8(0x4e), X1, X1)
		PXOR(X1, X2)
		PXOR(X4, X2)
		// fold MI into HI
		MOVOU(X6, X4)
		PCLMULQDQ(U8(0x01), X2, X4)
		PSHUFD(U8(0x4e), X2, X2)
		PXOR(X2, X3)
		PXOR(X4, X3)
		MOVOU(X3, X5)
		MOVOU(X5, Mem{Base: kp, Disp: offHtab + 16*(16-i)})
	}
	VZEROUPPER()
	RET()
}

// expandStep: a = (a ^ a<<32 ^ a<<64 ^ a<<96) ^ t. Clobbers X3.
func expandStep(a, t VecPhysical) {
	MOVOU(a, X3)
	PSLLDQ(U8(4), X3)
	PXOR(X3, a)
	PSLLDQ(U8(4), X3)
	PXOR(X3, a)
	PSLLDQ(U8(4), X3)
	PXOR(X3, a)
	PXOR(t, a)
}

// ---------------------------------------------------------------------------
// AVX-512 kernel: one message, 16 blocks (4 zmm) per iteration.

var (
	zBSWAP = Z8
	zCTR   = Z9
	zINC   = Z10
	zACC   = Z11
	zLO    = Z12
	zMI    = Z13
	zHI    = Z14
	zPOLY  = Z15
	zT     = Z31
	zRKL   = Z30
)

func zRK(i int) VecPhysical {
	return []VecPhysical{Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29}[i]
}
func xRK(i int) VecPhysical {
	return []VecPhysical{X16, X17, X18, X19, X20, X21, X22, X23, X24, X25, X26, X27, X28, X29}[i]
}

var zs = []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7}
var ys = []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7}

// aesZ encrypts vs in place with the round keys held in registers.
func aesZ(vs []VecPhysical, kp GPPhysical, xmm bool) {
	rk, last := zRK, VecPhysical(zRKL)
	if xmm {
		rk, last = xRK, X30
	}
	for _, v := range vs {
		VPXORD(rk(0), v, v)
	}
	for r := 1; r < 10; r++ {
		for _, v := range vs {
			VAESENC(rk(r), v, v)
		}
	}
	l := lbl("aesLast")
	CMPQ(Mem{Base: kp, Disp: offNR}, Imm(10))
	JE(LabelRef(l))
	for r := 10; r < 14; r++ {
		for _, v := range vs {
			VAESENC(rk(r), v, v)
		}
	}
	Label(l)
	for _, v := range vs {
		VAESENCLAST(last, v, v)
	}
}

// ghashZ multiplies ds[j] (byte-swapped blocks; ACC is added to ds[0]) by
// the powers at tbl+64j and folds the reduced sum into ACC. Clobbers Z0-Z3.
func ghashZ(ds []VecPhysical, tbl Mem) {
	VPXORD(zACC, ds[0], ds[0])
	mulAccZ(ds, tbl, true)
	reduceZ()
}

// mulAccZ adds the unreduced products ds[j]*tbl[j] to LO/MI/HI (or sets
// them if first). Clobbers ds and Z0-Z2.
func mulAccZ(ds []VecPhysical, tbl Mem, first bool) {
	for j, d := range ds {
		h := tbl.Offset(64 * j)
		if j == 0 && first {
			VPCLMULQDQ(U8(0x00), h, d, zLO)
			VPCLMULQDQ(U8(0x11), h, d, zHI)
			VPCLMULQDQ(U8(0x01), h, d, zMI)
			VPCLMULQDQ(U8(0x10), h, d, d)
			VPXORD(d, zMI, zMI)
			continue
		}
		VPCLMULQDQ(U8(0x00), h, d, Z0)
		VPCLMULQDQ(U8(0x11), h, d, Z1)
		VPCLMULQDQ(U8(0x01), h, d, Z2)
		VPCLMULQDQ(U8(0x10), h, d, d)
		VPXORD(Z0, zLO, zLO)
		VPXORD(Z1, zHI, zHI)
		VPTERNLOGD(U8(0x96), Z2, d, zMI)
	}
}

func reduceZ() { reduceZWith(Z0) }

// reduceZWith reduces LO/MI/HI into ACC using t (a zmm) as temporary.
func reduceZWith(t VecPhysical) {
	for _, f := range reducePieces(t) {
		f()
	}
}

func reducePieces(t VecPhysical) []func() {
	ty, tx := t.AsY(), t.AsX()
	return []func(){
		func() {
			VPCLMULQDQ(U8(0x01), zLO, zPOLY, zT)
			VPSHUFD(U8(0x4e), zLO, zLO)
			VPTERNLOGD(U8(0x96), zT, zLO, zMI)
		},
		func() {
			VPCLMULQDQ(U8(0x01), zMI, zPOLY, zT)
			VPSHUFD(U8(0x4e), zMI, zMI)
			VPTERNLOGD(U8(0x96), zT, zMI, zHI)
		},
		func() {
			VEXTRACTI64X4(U8(1), zHI, ty)
			VPXORD(ty, Y14, Y14)
			VEXTRACTI128(U8(1), Y14, tx)
			VPXOR(tx, X14, X11)
		},
	}
}

// mulPieces returns the GHASH multiply-accumulate of ds by the powers at
// tbl as separate pieces (to be interleaved with AES rounds), using only t
// as temporary. ACC is added into ds[0] first.
func mulPieces(ds []VecPhysical, tbl Mem, t VecPhysical) []func() {
	ps := []func(){func() { VPXORD(zACC, ds[0], ds[0]) }}
	for j, d := range ds {
		h := tbl.Offset(64 * j)
		if j == 0 {
			ps = append(ps,
				func() {
					VPCLMULQDQ(U8(0x00), h, d, zLO)
					VPCLMULQDQ(U8(0x11), h, d, zHI)
				},
				func() {
					VPCLMULQDQ(U8(0x01), h, d, zMI)
					VPCLMULQDQ(U8(0x10), h, d, d)
					VPXORD(d, zMI, zMI)
				})
			continue
		}
		ps = append(ps,
			func() {
				VPCLMULQDQ(U8(0x00), h, d, t)
				VPXORD(t, zLO, zLO)
			},
			func() {
				VPCLMULQDQ(U8(0x11), h, d, t)
				VPXORD(t, zHI, zHI)
			},
			func() {
				VPCLMULQDQ(U8(0x01), h, d, t)
				VPCLMULQDQ(U8(0x10), h, d, d)
				VPTERNLOGD(U8(0x96), t, d, zMI)
			})
	}
	return ps
}

// aesZStitched is aesZ on zmm with extra work interleaved between rounds
// (all of it is emitted before the AES-256 branch).
func aesZStitched(vs []VecPhysical, kp GPPhysical, work []func()) {
	for _, v := range vs {
		VPXORD(zRK(0), v, v)
	}
	per := (len(work) + 8) / 9
	for r := 1; r < 10; r++ {
		for _, v := range vs {
			VAESENC(zRK(r), v, v)
		}
		for i := 0; i < per && len(work) > 0; i++ {
			work[0]()
			work = work[1:]
		}
	}
	for _, f := range work {
		f()
	}
	l := lbl("aesLastS")
	CMPQ(Mem{Base: kp, Disp: offNR}, Imm(10))
	JE(LabelRef(l))
	for r := 10; r < 14; r++ {
		for _, v := range vs {
			VAESENC(zRK(r), v, v)
		}
	}
	Label(l)
	for _, v := range vs {
		VAESENCLAST(zRKL, v, v)
	}
}

// ctrZ sets vs to the next counter blocks (big-endian) and advances CTR.
func ctrZ(vs []VecPhysical) {
	for _, v := range vs {
		VPSHUFB(zBSWAP, zCTR, v)
		VPADDD(zINC, zCTR, zCTR)
	}
}

// lastMask sets K1 to the byte mask of the first n bytes (1 <= n <= 64).
func lastMask(n GPPhysical, sub int) {
	MOVQ(n, RAX)
	if sub != 0 {
		SUBQ(U32(sub), RAX)
	}
	MOVQ(I64(-1), RBX)
	BZHIQ(RAX, RBX, RBX)
	KMOVQ(RBX, K1)
}

// tblFor sets R13 = &htab[16-ceil(n/16)] for a tail of n bytes (n <= 256).
func tblFor(kp, n GPPhysical) Mem {
	LEAQ(Mem{Base: n, Disp: 15}, RAX)
	SHRQ(U8(4), RAX)
	NEGQ(RAX)
	SHLQ(U8(4), RAX)
	LEAQ(Mem{Base: kp, Index: RAX, Scale: 1, Disp: offHtab + 256}, R13)
	return Mem{Base: R13}
}

func gcmAVX512(seal, batch bool) {
	name := "open"
	if seal {
		name = "seal"
	}
	if batch {
		name += "Batch"
	}
	name += "AVX512"
	if batch {
		TEXT(name, NOSPLIT, "func(k *byte, d *byte, count int)")
	} else {
		TEXT(name, NOSPLIT, "func(k *byte, dst, src, aad []byte, nonce *byte, tag *byte)")
	}
	Doc(name + " encrypts (seal) or decrypts (open) src into dst and writes the GCM tag to tag.")
	const countOff = 32
	AllocLocal(48)
	descp := R14
	kp, out, in, n := RDI, R8, RSI, RDX
	aad, aadLen, nonce, tag := R9, R10, R11, R12
	Load(Param("k"), kp)
	local := Mem{Base: RSP}
	if batch {
		Load(Param("d"), descp)
		Load(Param("count"), RAX)
		MOVQ(RAX, local.Offset(countOff))
		TESTQ(RAX, RAX)
		JZ(LabelRef("done"))
	} else {
		Load(Param("dst").Base(), out)
		Load(Param("src").Base(), in)
		Load(Param("src").Len(), n)
		Load(Param("aad").Base(), aad)
		Load(Param("aad").Len(), aadLen)
		Load(Param("nonce"), nonce)
		Load(Param("tag"), tag)
	}

	VMOVDQU64(bswapMem, zBSWAP)
	VBROADCASTI32X4(gfpolyMem, zPOLY)
	for i := 0; i < 14; i++ {
		VBROADCASTI32X4(Mem{Base: kp, Disp: offRK + 16*i}, zRK(i))
	}
	MOVQ(Mem{Base: kp, Disp: offNR}, RAX)
	SHLQ(U8(4), RAX)
	VBROADCASTI32X4(Mem{Base: kp, Index: RAX, Scale: 1, Disp: offRK}, zRKL)
	if batch {
		Label("msgLoop")
		MOVQ(Mem{Base: descp, Disp: 0}, out)
		MOVQ(Mem{Base: descp, Disp: 8}, in)
		MOVQ(Mem{Base: descp, Disp: 16}, n)
		MOVQ(Mem{Base: descp, Disp: 24}, aad)
		MOVQ(Mem{Base: descp, Disp: 32}, aadLen)
		MOVQ(Mem{Base: descp, Disp: 40}, nonce)
		MOVQ(Mem{Base: descp, Disp: 48}, tag)
	}
	VPXORD(zACC, zACC, zACC)

	// J0 = nonce || 1, E(J0) -> local.
	VMOVQ(Mem{Base: nonce}, X0)
	VPINSRD(U8(2), Mem{Base: nonce, Disp: 8}, X0, X0)
	MOVL(U32(0x01000000), EAX)
	VPINSRD(U8(3), EAX, X0, X0)
	VMOVDQA64(X0, X1)
	aesZ([]VecPhysical{X1}, kp, true)
	VMOVDQU(X1, local)
	VPSHUFB(X8, X0, X0)
	VSHUFI64X2(U8(0), Z0, Z0, zCTR)
	VPADDD(ctrInit4, zCTR, zCTR)
	VMOVDQU64(ctrInc4, zINC)

	// lengths for the final block
	MOVQ(n, local.Offset(16))
	MOVQ(aadLen, local.Offset(24))

	dz := []VecPhysical{Z4, Z5, Z6, Z7}
	cz := []VecPhysical{Z0, Z1, Z2, Z3}
	htab := Mem{Base: kp, Disp: offHtab}

	// Short messages: if AAD <= 64 bytes and AAD, data and length blocks
	// together fit in 16 blocks, hash them all with one reduction.
	CMPQ(aadLen, U32(64))
	JA(LabelRef("long"))
	LEAQ(Mem{Base: aadLen, Disp: 15}, RAX)
	SHRQ(U8(4), RAX)
	LEAQ(Mem{Base: n, Disp: 15}, RBX)
	SHRQ(U8(4), RBX)
	ADDQ(RBX, RAX) // T-1 blocks before the length block
	CMPQ(RAX, U32(15))
	JA(LabelRef("long"))
	VPXORD(zLO, zLO, zLO)
	VPXORD(zMI, zMI, zMI)
	VPXORD(zHI, zHI, zHI)
	TESTQ(aadLen, aadLen)
	JZ(LabelRef("tailShared"))
	// table = &htab[16-T] = htab + 256 - 16*(RAX+1)
	NEGQ(RAX)
	SHLQ(U8(4), RAX)
	LEAQ(Mem{Base: kp, Index: RAX, Scale: 1, Disp: offHtab + 256 - 16}, R13)
	lastMask(aadLen, 0)
	VMOVDQU8_Z(Mem{Base: aad}, K1, Z4)
	VPSHUFB(zBSWAP, Z4, Z4)
	mulAccZ([]VecPhysical{Z4}, Mem{Base: R13}, false)
	JMP(LabelRef("tailShared"))

	Label("long")
	ghashMemZ(kp, aad, aadLen, "aad")

	if seal {
		// Stitched seal loop: the GHASH of the previous 16 ciphertext
		// blocks (Z4-Z7) runs between the AES rounds of the next 16, so
		// the hash no longer waits for the AES latency. Z10 (the counter
		// increment) serves as the GHASH temporary; the increment is read
		// from memory here.
		CMPQ(n, U32(256))
		JB(LabelRef("tail"))
		ctrZ(cz)
		aesZ(cz, kp, false)
		for j := 0; j < 4; j++ {
			VPXORD(Mem{Base: in, Disp: 64 * j}, cz[j], cz[j])
			VMOVDQU64(cz[j], Mem{Base: out, Disp: 64 * j})
			VPSHUFB(zBSWAP, cz[j], dz[j])
		}
		ADDQ(U32(256), in)
		ADDQ(U32(256), out)
		SUBQ(U32(256), n)
		Label("sloop")
		CMPQ(n, U32(256))
		JB(LabelRef("sdrain"))
		for _, v := range cz {
			VPSHUFB(zBSWAP, zCTR, v)
			VPADDD(ctrInc4, zCTR, zCTR)
		}
		work := append(mulPieces(dz, htab, Z10), reducePieces(Z10)...)
		aesZStitched(cz, kp, work)
		for j := 0; j < 4; j++ {
			VPXORD(Mem{Base: in, Disp: 64 * j}, cz[j], cz[j])
			VMOVDQU64(cz[j], Mem{Base: out, Disp: 64 * j})
			VPSHUFB(zBSWAP, cz[j], dz[j])
		}
		ADDQ(U32(256), in)
		ADDQ(U32(256), out)
		SUBQ(U32(256), n)
		JMP(LabelRef("sloop"))
		Label("sdrain")
		VMOVDQU64(ctrInc4, zINC)
		ghashZ(dz, htab)
		JMP(LabelRef("tail"))
	}

	// Open: the GHASH input is the ciphertext itself, so nothing waits
	// for AES and a plain loop overlaps well.
	if !seal {
		Label("loop")
		CMPQ(n, U32(256))
		JB(LabelRef("tail"))
		ctrZ(cz)
		aesZ(cz, kp, false)
		for j := 0; j < 4; j++ {
			if seal {
				VPXORD(Mem{Base: in, Disp: 64 * j}, cz[j], cz[j])
				VMOVDQU64(cz[j], Mem{Base: out, Disp: 64 * j})
				VPSHUFB(zBSWAP, cz[j], dz[j])
			} else {
				VMOVDQU64(Mem{Base: in, Disp: 64 * j}, dz[j])
				VPXORD(dz[j], cz[j], cz[j])
				VMOVDQU64(cz[j], Mem{Base: out, Disp: 64 * j})
				VPSHUFB(zBSWAP, dz[j], dz[j])
			}
		}
		ghashZ(dz, htab)
		ADDQ(U32(256), in)
		ADDQ(U32(256), out)
		SUBQ(U32(256), n)
		JMP(LabelRef("loop"))
	}

	Label("tail")
	VPXORD(zLO, zLO, zLO)
	VPXORD(zMI, zMI, zMI)
	VPXORD(zHI, zHI, zHI)
	Label("tailShared")
	// n < 256 bytes remain. The length block takes H^1, so a tail of
	// more than 240 bytes (16 blocks) is hashed and reduced on its own.
	TESTQ(n, n)
	JZ(LabelRef("lenBlock"))
	CMPQ(n, U32(240))
	JA(LabelRef("tailBig"))
	for k := 1; k <= 3; k++ {
		CMPQ(n, U32(64*k))
		JBE(LabelRef(fmt.Sprintf("tail%d", k)))
	}
	JMP(LabelRef("tail4"))
	for k := 5; k >= 1; k-- {
		big := k == 5
		if big {
			Label("tailBig")
			k = 4
		} else {
			Label(fmt.Sprintf("tail%d", k))
		}
		ctrZ(cz[:k])
		aesZ(cz[:k], kp, false)
		lastMask(n, 64*(k-1))
		for j := 0; j < k; j++ {
			src := Mem{Base: in, Disp: 64 * j}
			dst := Mem{Base: out, Disp: 64 * j}
			if j < k-1 {
				if seal {
					VPXORD(src, cz[j], cz[j])
					VMOVDQU64(cz[j], dst)
					VPSHUFB(zBSWAP, cz[j], dz[j])
				} else {
					VMOVDQU64(src, dz[j])
					VPXORD(dz[j], cz[j], cz[j])
					VMOVDQU64(cz[j], dst)
					VPSHUFB(zBSWAP, dz[j], dz[j])
				}
				continue
			}
			VMOVDQU8_Z(src, K1, dz[j])
			VPXORD(dz[j], cz[j], cz[j])
			VMOVDQU8(cz[j], K1, dst)
			if seal {
				VMOVDQU8_Z(cz[j], K1, dz[j])
			}
			VPSHUFB(zBSWAP, dz[j], dz[j])
		}
		VPXORD(zACC, dz[0], dz[0])
		if big {
			// LO/MI/HI are zero here (tailBig is only reached from the long path).
			mulAccZ(dz[:k], tblFor(kp, n), true)
			reduceZ()
			VPXORD(zLO, zLO, zLO)
			VPXORD(zMI, zMI, zMI)
			VPXORD(zHI, zHI, zHI)
			JMP(LabelRef("lenBlock"))
			k = 5
			continue
		}
		VPXORD(zACC, zACC, zACC)
		// powers H^(nb+1)..H^2: table for n+16 bytes
		LEAQ(Mem{Base: n, Disp: 16}, RCX)
		mulAccZ(dz[:k], tblFor(kp, RCX), false)
		JMP(LabelRef("lenBlock"))
	}

	Label("lenBlock")
	// Lengths block (bits), byte-swapped form: aadbits<<64 | ctbits, times H^1.
	MOVQ(local.Offset(16), RAX)
	MOVQ(local.Offset(24), RBX)
	SHLQ(U8(3), RAX)
	SHLQ(U8(3), RBX)
	VMOVQ(RAX, X4)
	VPINSRQ(U8(1), RBX, X4, X4)
	VPXORD(X11, X4, X4)
	h1 := htab.Offset(16 * 15)
	VPCLMULQDQ(U8(0x00), h1, X4, X0)
	VPCLMULQDQ(U8(0x11), h1, X4, X1)
	VPCLMULQDQ(U8(0x01), h1, X4, X2)
	VPCLMULQDQ(U8(0x10), h1, X4, X4)
	VPXORD(Z0, zLO, zLO)
	VPXORD(Z1, zHI, zHI)
	VPTERNLOGD(U8(0x96), Z2, Z4, zMI)
	reduceZ()
	VPSHUFB(X8, X11, X11)
	VPXORD(local, X11, X11)
	VMOVDQU(X11, Mem{Base: tag})
	if batch {
		ADDQ(U32(descSize), descp)
		DECQ(local.Offset(countOff))
		JNZ(LabelRef("msgLoop"))
		Label("done")
	}
	VZEROUPPER()
	RET()
}

// ghashMemZ hashes n bytes at p (zero-padded to a block) into ACC.
func ghashMemZ(kp, p, n GPPhysical, pfx string) {
	dz := []VecPhysical{Z4, Z5, Z6, Z7}
	Label(pfx + "Loop")
	CMPQ(n, U32(256))
	JB(LabelRef(pfx + "Tail"))
	for j := 0; j < 4; j++ {
		VMOVDQU64(Mem{Base: p, Disp: 64 * j}, dz[j])
		VPSHUFB(zBSWAP, dz[j], dz[j])
	}
	ghashZ(dz, Mem{Base: kp, Disp: offHtab})
	ADDQ(U32(256), p)
	SUBQ(U32(256), n)
	JMP(LabelRef(pfx + "Loop"))
	Label(pfx + "Tail")
	TESTQ(n, n)
	JZ(LabelRef(pfx + "Done"))
	for k := 1; k <= 3; k++ {
		CMPQ(n, U32(64*k))
		JBE(LabelRef(fmt.Sprintf("%sTail%d", pfx, k)))
	}
	for k := 4; k >= 1; k-- {
		Label(fmt.Sprintf("%sTail%d", pfx, k))
		lastMask(n, 64*(k-1))
		for j := 0; j < k-1; j++ {
			VMOVDQU64(Mem{Base: p, Disp: 64 * j}, dz[j])
			VPSHUFB(zBSWAP, dz[j], dz[j])
		}
		VMOVDQU8_Z(Mem{Base: p, Disp: 64 * (k - 1)}, K1, dz[k-1])
		VPSHUFB(zBSWAP, dz[k-1], dz[k-1])
		ghashZ(dz[:k], tblFor(kp, n))
		JMP(LabelRef(pfx + "Done"))
	}
	Label(pfx + "Done")
}

// ---------------------------------------------------------------------------
// AVX2 kernel: one message, 8 blocks (4 ymm) per iteration. Only Y0-Y15
// exist with VEX, so round keys stay in memory (duplicated, rk2).

var (
	yBSWAP = Y8
	yCTR   = Y9
	yACC   = Y10
	yLO    = Y11
	yMI    = Y12
	yHI    = Y13
	yT     = Y14
	yINC   = Y15
)

func aesY(vs []VecPhysical, kp GPPhysical) {
	rk := func(i int) Mem { return Mem{Base: kp, Disp: offRK2 + 32*i} }
	for _, v := range vs {
		VPXOR(rk(0), v, v)
	}
	for r := 1; r < 10; r++ {
		for _, v := range vs {
			VAESENC(rk(r), v, v)
		}
	}
	l := lbl("aesLastY")
	CMPQ(Mem{Base: kp, Disp: offNR}, Imm(10))
	JE(LabelRef(l))
	for r := 10; r < 14; r++ {
		for _, v := range vs {
			VAESENC(rk(r), v, v)
		}
	}
	Label(l)
	MOVQ(Mem{Base: kp, Disp: offNR}, RBX)
	SHLQ(U8(5), RBX)
	for _, v := range vs {
		VAESENCLAST(Mem{Base: kp, Index: RBX, Scale: 1, Disp: offRK2}, v, v)
	}
}

// ghashY: like ghashZ with 2 blocks per vector. Clobbers Y0-Y2, Y14.
func ghashY(ds []VecPhysical, tbl Mem) {
	VPXOR(yACC, ds[0], ds[0])
	mulAccY(ds, tbl, true)
	reduceY()
}

// ghashYPieces is ghashY split into pieces for interleaving with AES rounds,
// using only t (a ymm) and yT as temporaries.
func ghashYPieces(ds []VecPhysical, tbl Mem, t VecPhysical) []func() {
	ps := []func(){func() { VPXOR(yACC, ds[0], ds[0]) }}
	for j, d := range ds {
		h := tbl.Offset(32 * j)
		if j == 0 {
			ps = append(ps,
				func() {
					VPCLMULQDQ(U8(0x00), h, d, yLO)
					VPCLMULQDQ(U8(0x11), h, d, yHI)
				},
				func() {
					VPCLMULQDQ(U8(0x01), h, d, yMI)
					VPCLMULQDQ(U8(0x10), h, d, d)
					VPXOR(d, yMI, yMI)
				})
			continue
		}
		ps = append(ps,
			func() {
				VPCLMULQDQ(U8(0x00), h, d, t)
				VPXOR(t, yLO, yLO)
			},
			func() {
				VPCLMULQDQ(U8(0x11), h, d, t)
				VPXOR(t, yHI, yHI)
			},
			func() {
				VPCLMULQDQ(U8(0x01), h, d, t)
				VPCLMULQDQ(U8(0x10), h, d, d)
				VPXOR(t, yMI, yMI)
				VPXOR(d, yMI, yMI)
			})
	}
	return append(ps,
		func() {
			VPCLMULQDQ(U8(0x10), gfpoly32, yLO, yT)
			VPSHUFD(U8(0x4e), yLO, yLO)
			VPXOR(yLO, yMI, yMI)
			VPXOR(yT, yMI, yMI)
		},
		func() {
			VPCLMULQDQ(U8(0x10), gfpoly32, yMI, yT)
			VPSHUFD(U8(0x4e), yMI, yMI)
			VPXOR(yMI, yHI, yHI)
			VPXOR(yT, yHI, yHI)
		},
		func() {
			VEXTRACTI128(U8(1), yHI, t.AsX())
			VPXOR(t.AsX(), X13, X10)
		})
}

// aesYStitched is aesY with work spread over rounds 1..9.
func aesYStitched(vs []VecPhysical, kp GPPhysical, work []func()) {
	for _, v := range vs {
		VPXOR(Mem{Base: kp, Disp: offRK2}, v, v)
	}
	aesYRounds(vs, kp, work)
}

func ctrY(vs []VecPhysical) {
	for _, v := range vs {
		VPSHUFB(yBSWAP, yCTR, v)
		VPADDD(yINC, yCTR, yCTR)
	}
}

// copyPartial copies n (0..63) bytes from src to dst. Clobbers src, dst,
// RBX and t (a ymm).
func copyPartial(src, dst, n GPPhysical, t VecPhysical) {
	type step struct {
		bit  int
		copy func()
	}
	steps := []step{
		{32, func() { VMOVDQU(Mem{Base: src}, t); VMOVDQU(t, Mem{Base: dst}) }},
		{16, func() { VMOVDQU(Mem{Base: src}, t.AsX()); VMOVDQU(t.AsX(), Mem{Base: dst}) }},
		{8, func() { MOVQ(Mem{Base: src}, RBX); MOVQ(RBX, Mem{Base: dst}) }},
		{4, func() { MOVL(Mem{Base: src}, EBX); MOVL(EBX, Mem{Base: dst}) }},
		{2, func() { MOVW(Mem{Base: src}, BX); MOVW(BX, Mem{Base: dst}) }},
		{1, func() { MOVB(Mem{Base: src}, BL); MOVB(BL, Mem{Base: dst}) }},
	}
	for _, s := range steps {
		l := lbl("cp")
		TESTQ(U32(s.bit), n)
		JZ(LabelRef(l))
		s.copy()
		if s.bit > 1 {
			ADDQ(U32(s.bit), src)
			ADDQ(U32(s.bit), dst)
		}
		Label(l)
	}
}

// mulAccY adds the unreduced products ds[j]*tbl[j] (two blocks per ymm) to
// LO/MI/HI, or sets them if first. Clobbers ds and Y0-Y2.
func mulAccY(ds []VecPhysical, tbl Mem, first bool) {
	for j, d := range ds {
		h := tbl.Offset(32 * j)
		if j == 0 && first {
			VPCLMULQDQ(U8(0x00), h, d, yLO)
			VPCLMULQDQ(U8(0x11), h, d, yHI)
			VPCLMULQDQ(U8(0x01), h, d, yMI)
			VPCLMULQDQ(U8(0x10), h, d, d)
			VPXOR(d, yMI, yMI)
			continue
		}
		VPCLMULQDQ(U8(0x00), h, d, Y0)
		VPCLMULQDQ(U8(0x11), h, d, Y1)
		VPCLMULQDQ(U8(0x01), h, d, Y2)
		VPCLMULQDQ(U8(0x10), h, d, d)
		VPXOR(Y0, yLO, yLO)
		VPXOR(Y1, yHI, yHI)
		VPXOR(Y2, yMI, yMI)
		VPXOR(d, yMI, yMI)
	}
}

// reduceY reduces LO/MI/HI (both lanes) into ACC (X10, upper lane zero).
// Clobbers X0 and yT.
func reduceY() {
	VPCLMULQDQ(U8(0x10), gfpoly32, yLO, yT)
	VPSHUFD(U8(0x4e), yLO, yLO)
	VPXOR(yLO, yMI, yMI)
	VPXOR(yT, yMI, yMI)
	VPCLMULQDQ(U8(0x10), gfpoly32, yMI, yT)
	VPSHUFD(U8(0x4e), yMI, yMI)
	VPXOR(yMI, yHI, yHI)
	VPXOR(yT, yHI, yHI)
	VEXTRACTI128(U8(1), yHI, X0)
	VPXOR(X0, X13, X10)
}

// loadPartialY sets v to the RAX (1..32) bytes at src, zero-padded. VEX
// has no byte masks: when the 32 bytes at src lie within one 4 KiB page
// (reading them cannot fault, the check the runtime's memequal makes) it
// loads them and clears the bytes past RAX with tailMask; otherwise it
// copies through the stack block buf. Keeps RAX; clobbers RBX, RCX, R11
// and t (a ymm other than v).
func loadPartialY(src Mem, v VecPhysical, buf Mem, t VecPhysical) {
	slow, done := lbl("ldSlow"), lbl("ldDone")
	LEAQ(src, R11)
	MOVQ(R11, RBX)
	ANDQ(U32(4095), RBX)
	CMPQ(RBX, U32(4096-32))
	JA(LabelRef(slow))
	MOVQ(RAX, RBX)
	NEGQ(RBX)
	LEAQ(tailMask, RCX)
	VMOVDQU(Mem{Base: R11}, v)
	VPAND(Mem{Base: RCX, Index: RBX, Scale: 1, Disp: 32}, v, v)
	JMP(LabelRef(done))
	Label(slow)
	VPXOR(v, v, v)
	VMOVDQU(v, buf)
	LEAQ(buf, RCX)
	copyPartial(R11, RCX, RAX, t)
	VMOVDQU(buf, v)
	Label(done)
}

// storePartialY stores the first RAX (1..32) bytes of v to dst, largest
// pieces first straight from the register. Keeps RAX; clobbers R11, v.
func storePartialY(v VecPhysical, dst Mem) {
	done := lbl("stDone")
	x := v.AsX()
	LEAQ(dst, R11)
	l := lbl("st16")
	TESTQ(U32(32), RAX)
	JZ(LabelRef(l))
	VMOVDQU(v, Mem{Base: R11})
	JMP(LabelRef(done))
	Label(l)
	l = lbl("st8")
	TESTQ(U32(16), RAX)
	JZ(LabelRef(l))
	VMOVDQU(x, Mem{Base: R11})
	VEXTRACTI128(U8(1), v, x)
	ADDQ(U32(16), R11)
	Label(l)
	for _, s := range []struct {
		bit   int
		store func()
	}{
		{8, func() { VMOVQ(x, Mem{Base: R11}) }},
		{4, func() { VMOVD(x, Mem{Base: R11}) }},
		{2, func() { VPEXTRW(U8(0), x, Mem{Base: R11}) }},
		{1, func() { VPEXTRB(U8(0), x, Mem{Base: R11}) }},
	} {
		l := lbl("st")
		TESTQ(U32(s.bit), RAX)
		JZ(LabelRef(l))
		s.store()
		if s.bit > 1 {
			VPSRLDQ(U8(s.bit), x, x)
			ADDQ(U32(s.bit), R11)
		}
		Label(l)
	}
	Label(done)
}

// buildJ0 sets x to J0 = nonce || 0x00000001 (12-byte nonce).
func buildJ0(nonce GPPhysical, x VecPhysical) {
	VMOVQ(Mem{Base: nonce}, x)
	VPINSRD(U8(2), Mem{Base: nonce, Disp: 8}, x, x)
	MOVL(U32(0x01000000), EAX)
	VPINSRD(U8(3), EAX, x, x)
}

// aesYRounds applies AES rounds 1..nr to vs, already xored with round key
// 0, interleaved (round keys are ymm memory operands), with the pieces of
// work spread evenly over rounds 1..9 (one after each while there are at
// most 9). Clobbers RBX.
func aesYRounds(vs []VecPhysical, kp GPPhysical, work []func()) {
	rk := func(i int) Mem { return Mem{Base: kp, Disp: offRK2 + 32*i} }
	per := (len(work) + 8) / 9
	for r := 1; r < 10; r++ {
		for _, v := range vs {
			VAESENC(rk(r), v, v)
		}
		for i := 0; i < per && len(work) > 0; i++ {
			work[0]()
			work = work[1:]
		}
	}
	for _, f := range work {
		f()
	}
	l := lbl("aesLastYR")
	CMPQ(Mem{Base: kp, Disp: offNR}, Imm(10))
	JE(LabelRef(l))
	for r := 10; r < 14; r++ {
		for _, v := range vs {
			VAESENC(rk(r), v, v)
		}
	}
	Label(l)
	MOVQ(Mem{Base: kp, Disp: offNR}, RBX)
	SHLQ(U8(5), RBX)
	for _, v := range vs {
		VAESENCLAST(Mem{Base: kp, Index: RBX, Scale: 1, Disp: offRK2}, v, v)
	}
}

// shortAADPieces hashes an AAD of 0..64 bytes (one or two ymm, the last
// partial) with the powers at R13 into LO/MI/HI, as two self-contained
// pieces (each branch stays inside its piece, so they can sit between AES
// rounds). Uses Y7 and Y15; clobbers RAX, RBX, RCX, R11.
func shortAADPieces(aad, aadLen GPPhysical, buf Mem) []func() {
	mul := func(h Mem) {
		VPSHUFB(yBSWAP, Y7, Y7)
		VPCLMULQDQ(U8(0x00), h, Y7, Y15)
		VPXOR(Y15, yLO, yLO)
		VPCLMULQDQ(U8(0x11), h, Y7, Y15)
		VPXOR(Y15, yHI, yHI)
		VPCLMULQDQ(U8(0x01), h, Y7, Y15)
		VPXOR(Y15, yMI, yMI)
		VPCLMULQDQ(U8(0x10), h, Y7, Y7)
		VPXOR(Y7, yMI, yMI)
	}
	return []func(){
		func() {
			done, part, have := lbl("aadA"), lbl("aadAPart"), lbl("aadAHave")
			TESTQ(aadLen, aadLen)
			JZ(LabelRef(done))
			MOVQ(aadLen, RAX)
			CMPQ(RAX, U32(32))
			JB(LabelRef(part))
			VMOVDQU(Mem{Base: aad}, Y7)
			JMP(LabelRef(have))
			Label(part)
			loadPartialY(Mem{Base: aad}, Y7, buf, Y15)
			Label(have)
			mul(Mem{Base: R13})
			Label(done)
		},
		func() {
			done := lbl("aadB")
			CMPQ(aadLen, U32(32))
			JBE(LabelRef(done))
			MOVQ(aadLen, RAX)
			SUBQ(U32(32), RAX)
			loadPartialY(Mem{Base: aad, Disp: 32}, Y7, buf, Y15)
			mul(Mem{Base: R13, Disp: 32})
			Label(done)
		},
	}
}

// xorLastPartialY xors keystream v with the last, partial vector (index
// last) of the n bytes at in and stores the result at out. Y15 is then the
// ciphertext zero-padded: for seal the result masked past the end, for
// open the input as loaded. Clobbers v, RAX, RBX, RCX, R11 and Y14.
func xorLastPartialY(seal bool, v VecPhysical, last int, in, out, n GPPhysical, buf Mem) {
	MOVQ(n, RAX)
	if last > 0 {
		SUBQ(U32(32*last), RAX)
	}
	loadPartialY(Mem{Base: in, Disp: 32 * last}, Y15, buf, Y14)
	VPXOR(Y15, v, v)
	if seal {
		// Y15 = ciphertext with the bytes past the end cleared.
		MOVQ(RAX, RBX)
		NEGQ(RBX)
		LEAQ(tailMask, RCX)
		VPAND(Mem{Base: RCX, Index: RBX, Scale: 1, Disp: 32}, v, Y15)
	}
	storePartialY(v, Mem{Base: out, Disp: 32 * last})
}

// shortData xors the keystream in vs (len(vs) = ceil(n/32) vectors, the
// last one partial) with the n bytes at in into out and adds the products
// of the ciphertext blocks and the powers at R13 to LO/MI/HI. Only Y14 and
// Y15 are temporaries (every other register holds keystream). For open the
// products do not wait for the AES (the ciphertext is the input), but the
// hash still comes after it in program order: issuing the long AES chain
// first measured faster than hashing first (37-38 vs 42-43 ns per 160-byte
// open, best of runs), presumably because the hash then fills the
// scheduler while the AES chain waits.
func shortData(seal bool, vs []VecPhysical, in, out, n GPPhysical, buf Mem) {
	last := len(vs) - 1
	for j, v := range vs[:last] {
		src, dst := Mem{Base: in, Disp: 32 * j}, Mem{Base: out, Disp: 32 * j}
		if seal {
			VPXOR(src, v, v)
			VMOVDQU(v, dst)
			VPSHUFB(yBSWAP, v, v)
		} else {
			// Load first: out may be in.
			VMOVDQU(src, Y15)
			VPXOR(Y15, v, v)
			VMOVDQU(v, dst)
			VPSHUFB(yBSWAP, Y15, v)
		}
	}
	v := vs[last]
	xorLastPartialY(seal, v, last, in, out, n, buf)
	VPSHUFB(yBSWAP, Y15, v)
	for j, d := range vs {
		h := Mem{Base: R13, Disp: 32 * j}
		VPCLMULQDQ(U8(0x00), h, d, Y14)
		VPCLMULQDQ(U8(0x11), h, d, Y15)
		VPXOR(Y14, yLO, yLO)
		VPXOR(Y15, yHI, yHI)
		VPCLMULQDQ(U8(0x01), h, d, Y14)
		VPCLMULQDQ(U8(0x10), h, d, d)
		VPXOR(Y14, yMI, yMI)
		VPXOR(d, yMI, yMI)
	}
}

func gcmAVX2(seal, batch bool) {
	// The batch open kernel also checks the tags: see verify below.
	verify := batch && !seal
	name := "open"
	if seal {
		name = "seal"
	}
	if verify {
		name += "Verify"
	}
	if batch {
		name += "Batch"
	}
	name += "AVX2"
	if batch {
		// Not NOSPLIT: the two message records of the pipelined short
		// path make the frame too large for the nosplit limit.
		TEXT(name, 0, "func(k *byte, d *byte, count int)")
	} else {
		TEXT(name, NOSPLIT, "func(k *byte, dst, src, aad []byte, nonce *byte, tag *byte)")
	}
	if verify {
		Doc(name + " decrypts like openBatchAVX512 but compares each computed tag with the received one (at in+n) in constant time and writes 1 (equal) or 0 to the byte at tag.")
	} else {
		Doc(name + " is the AVX2 (ymm) variant of " + name[:4] + "AVX512.")
	}
	const countOff, recvOff = 64, 72
	if batch {
		AllocLocal(frameBatchY)
	} else {
		AllocLocal(96)
	}
	descp := R14
	kp, out, in, n := RDI, R8, RSI, RDX
	aad, aadLen, nonce, tag := R9, R10, R11, R12
	Load(Param("k"), kp)
	local := Mem{Base: RSP}
	if batch {
		Load(Param("d"), descp)
		Load(Param("count"), RAX)
		MOVQ(RAX, local.Offset(countOff))
		TESTQ(RAX, RAX)
		JZ(LabelRef("done"))
	} else {
		Load(Param("dst").Base(), out)
		Load(Param("src").Base(), in)
		Load(Param("src").Len(), n)
		Load(Param("aad").Base(), aad)
		Load(Param("aad").Len(), aadLen)
		Load(Param("nonce"), nonce)
		Load(Param("tag"), tag)
	}
	buf := local.Offset(32) // 32-byte scratch block

	VMOVDQU(bswapMem, yBSWAP)
	if batch {
		pipelinedShortY(seal, verify, kp, descp, buf)
		// Long message: finish the pending short one first (the long
		// path needs every register), then load the rest of the
		// descriptor.
		Label("longEntry")
		MOVQ(local.Offset(prevOff), R12)
		LEAQ(local.Offset(recDOff), RAX)
		CMPQ(R12, RAX)
		JE(LabelRef("flushed"))
		for _, f := range phaseBPieces(verify, R12) {
			f()
		}
		LEAQ(local.Offset(recDOff), RAX)
		MOVQ(RAX, local.Offset(prevOff))
		Label("flushed")
		MOVQ(Mem{Base: descp, Disp: 0}, out)
		MOVQ(Mem{Base: descp, Disp: 8}, in)
		MOVQ(Mem{Base: descp, Disp: 24}, aad)
		MOVQ(Mem{Base: descp, Disp: 40}, nonce)
		MOVQ(Mem{Base: descp, Disp: 48}, tag)
	}
	if verify {
		LEAQ(Mem{Base: in, Index: n, Scale: 1}, RAX) // received tag
		MOVQ(RAX, local.Offset(recvOff))
	}
	VPXOR(yACC, yACC, yACC)
	VMOVDQU(ctrInc2, yINC)

	MOVQ(n, local.Offset(16))
	MOVQ(aadLen, local.Offset(24))

	dy := []VecPhysical{Y4, Y5, Y6, Y7}
	cy := []VecPhysical{Y0, Y1, Y2, Y3}
	htab := Mem{Base: kp, Disp: offHtab}

	if !batch {
		// Short messages (AAD <= 64 bytes, data <= 224 bytes, AAD + data +
		// length block <= 16 blocks): every block is multiplied by its final
		// power H^T..H^1 and the products are summed unreduced, so there is
		// one reduction per message instead of a serial chain of them (AAD,
		// data, tail, length block). R13 walks the powers: it points at the
		// power of the next block to hash. The keystream of the whole message
		// and E(J0) come from one interleaved AES pass (up to 8 ymm), so no
		// lone block waits out the latency of a whole AES chain.
		CMPQ(aadLen, U32(64))
		JA(LabelRef("long"))
		CMPQ(n, U32(224))
		JA(LabelRef("long"))
		LEAQ(Mem{Base: aadLen, Disp: 15}, RAX)
		SHRQ(U8(4), RAX)
		LEAQ(Mem{Base: n, Disp: 15}, RBX)
		SHRQ(U8(4), RBX)
		ADDQ(RBX, RAX) // T-1 blocks before the length block
		CMPQ(RAX, U32(15))
		JA(LabelRef("long"))
		VPXOR(yLO, yLO, yLO)
		VPXOR(yMI, yMI, yMI)
		VPXOR(yHI, yHI, yHI)
		// R13 = &htab[16-T] = htab + 256 - 16*(RAX+1)
		NEGQ(RAX)
		SHLQ(U8(4), RAX)
		LEAQ(Mem{Base: kp, Index: RAX, Scale: 1, Disp: offHtab + 256 - 16}, R13)
		// J0 now: a partial AAD load may use R11 (nonce). X6 is not used
		// until the keystream.
		buildJ0(nonce, X6)
		// J0 (whitened) in Y14, counters from J0+1 in CTR.
		VPSHUFB(X8, X6, X9)
		VINSERTI128(U8(1), X9, Y9, yCTR)
		VPADDD(ctrInit2, yCTR, yCTR)
		VPXOR(Mem{Base: kp, Disp: offRK2}, Y6, Y14)
		// m = ceil(n/32) vectors of keystream, m = 0..7.
		all := []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6}
		for m := 0; m <= 6; m++ {
			CMPQ(n, U32(32*m))
			JBE(LabelRef(fmt.Sprintf("short%d", m)))
		}
		for m := 7; m >= 0; m-- {
			Label(fmt.Sprintf("short%d", m))
			vs := all[:m]
			ctrY(vs)
			for _, v := range vs {
				VPXOR(Mem{Base: kp, Disp: offRK2}, v, v)
			}
			// The AAD (0..64 bytes, at most 2 ymm) is hashed between the
			// AES rounds, with Y7 and Y15 (free once the counters are made):
			// issued after the first round, its products no longer delay
			// the AES chain, which is the message's critical path.
			aesYRounds(append(vs[:m:m], Y14), kp, shortAADPieces(aad, aadLen, buf))
			// A zero-padded odd AAD block was multiplied by a spare power
			// (or the zeros after H^1): its product is zero. R13 moves on
			// to the data's powers.
			LEAQ(Mem{Base: aadLen, Disp: 15}, RAX)
			ANDQ(I8(-16), RAX)
			ADDQ(RAX, R13)
			VMOVDQU(X14, local) // E(J0)
			if m > 0 {
				shortData(seal, vs, in, out, n, buf)
			}
			JMP(LabelRef("lenBlock"))
		}
	}

	Label("long")
	// J0 = nonce || 1, E(J0) -> local.
	buildJ0(nonce, X0)
	VPXOR(Mem{Base: kp, Disp: offRK}, X0, X1)
	for r := 1; r < 10; r++ {
		VAESENC(Mem{Base: kp, Disp: offRK + 16*r}, X1, X1)
	}
	l := lbl("j0Last")
	CMPQ(Mem{Base: kp, Disp: offNR}, Imm(10))
	JE(LabelRef(l))
	for r := 10; r < 14; r++ {
		VAESENC(Mem{Base: kp, Disp: offRK + 16*r}, X1, X1)
	}
	Label(l)
	MOVQ(Mem{Base: kp, Disp: offNR}, RBX)
	SHLQ(U8(4), RBX)
	VAESENCLAST(Mem{Base: kp, Index: RBX, Scale: 1, Disp: offRK}, X1, X1)
	VMOVDQU(X1, local)
	VPSHUFB(X8, X0, X0)
	VINSERTI128(U8(1), X0, Y0, yCTR)
	VPADDD(ctrInit2, yCTR, yCTR)
	// AAD
	Label("aadLoop")
	CMPQ(aadLen, U32(128))
	JB(LabelRef("aadTail"))
	for j := 0; j < 4; j++ {
		VMOVDQU(Mem{Base: aad, Disp: 32 * j}, dy[j])
		VPSHUFB(yBSWAP, dy[j], dy[j])
	}
	ghashY(dy, htab.Offset(128))
	ADDQ(U32(128), aad)
	SUBQ(U32(128), aadLen)
	JMP(LabelRef("aadLoop"))
	Label("aadTail")
	TESTQ(aadLen, aadLen)
	JZ(LabelRef("aadDone"))
	for k := 1; k <= 3; k++ {
		CMPQ(aadLen, U32(32*k))
		JBE(LabelRef(fmt.Sprintf("aadTail%d", k)))
	}
	for k := 4; k >= 1; k-- {
		Label(fmt.Sprintf("aadTail%d", k))
		for j := 0; j < k-1; j++ {
			VMOVDQU(Mem{Base: aad, Disp: 32 * j}, dy[j])
			VPSHUFB(yBSWAP, dy[j], dy[j])
		}
		MOVQ(aadLen, RAX)
		SUBQ(U32(32*(k-1)), RAX)
		loadPartialY(Mem{Base: aad, Disp: 32 * (k - 1)}, dy[k-1], buf, Y14)
		VPSHUFB(yBSWAP, dy[k-1], dy[k-1])
		ghashY(dy[:k], tblFor(kp, aadLen))
		JMP(LabelRef("aadDone"))
	}
	Label("aadDone")

	if seal {
		// Stitched seal loop, as in the AVX-512 kernel; Y15 (the counter
		// increment) is the GHASH temporary and the increment is read
		// from memory inside the loop.
		CMPQ(n, U32(128))
		JB(LabelRef("tail"))
		ctrY(cy)
		aesY(cy, kp)
		for j := 0; j < 4; j++ {
			VPXOR(Mem{Base: in, Disp: 32 * j}, cy[j], cy[j])
			VMOVDQU(cy[j], Mem{Base: out, Disp: 32 * j})
			VPSHUFB(yBSWAP, cy[j], dy[j])
		}
		ADDQ(U32(128), in)
		ADDQ(U32(128), out)
		SUBQ(U32(128), n)
		Label("sloop")
		CMPQ(n, U32(128))
		JB(LabelRef("sdrain"))
		for _, v := range cy {
			VPSHUFB(yBSWAP, yCTR, v)
			VPADDD(ctrInc2, yCTR, yCTR)
		}
		aesYStitched(cy, kp, ghashYPieces(dy, htab.Offset(128), Y15))
		for j := 0; j < 4; j++ {
			VPXOR(Mem{Base: in, Disp: 32 * j}, cy[j], cy[j])
			VMOVDQU(cy[j], Mem{Base: out, Disp: 32 * j})
			VPSHUFB(yBSWAP, cy[j], dy[j])
		}
		ADDQ(U32(128), in)
		ADDQ(U32(128), out)
		SUBQ(U32(128), n)
		JMP(LabelRef("sloop"))
		Label("sdrain")
		ghashY(dy, htab.Offset(128))
		JMP(LabelRef("tail"))
	} else {
		// Stitched open loop: GHASH hashes the ciphertext, which is
		// there before the keystream, so the hash of 8 blocks runs
		// between the AES rounds of the same 8 blocks (Y15, the counter
		// increment, is the GHASH temporary, as in seal).
		Label("oloop")
		CMPQ(n, U32(128))
		JB(LabelRef("tail"))
		for j := 0; j < 4; j++ {
			VMOVDQU(Mem{Base: in, Disp: 32 * j}, dy[j])
			VPSHUFB(yBSWAP, dy[j], dy[j])
		}
		for _, v := range cy {
			VPSHUFB(yBSWAP, yCTR, v)
			VPADDD(ctrInc2, yCTR, yCTR)
		}
		aesYStitched(cy, kp, ghashYPieces(dy, htab.Offset(128), Y15))
		for j := 0; j < 4; j++ {
			VPXOR(Mem{Base: in, Disp: 32 * j}, cy[j], cy[j])
			VMOVDQU(cy[j], Mem{Base: out, Disp: 32 * j})
		}
		ADDQ(U32(128), in)
		ADDQ(U32(128), out)
		SUBQ(U32(128), n)
		JMP(LabelRef("oloop"))
	}

	// Long path tail: n < 128 bytes remain; the accumulator goes into
	// the first tail block, and tail and length block share one
	// reduction (powers H^(nb+1)..H^2, then H^1).
	Label("tail")
	VMOVDQU(ctrInc2, yINC)
	VPXOR(yLO, yLO, yLO)
	VPXOR(yMI, yMI, yMI)
	VPXOR(yHI, yHI, yHI)
	LEAQ(Mem{Base: n, Disp: 16}, RCX)
	tblFor(kp, RCX)
	Label("tailShared")
	TESTQ(n, n)
	JZ(LabelRef("lenBlock"))
	for k := 1; k <= 3; k++ {
		CMPQ(n, U32(32*k))
		JBE(LabelRef(fmt.Sprintf("tail%d", k)))
	}
	for k := 4; k >= 1; k-- {
		Label(fmt.Sprintf("tail%d", k))
		ctrY(cy[:k])
		aesY(cy[:k], kp)
		for j := 0; j < k-1; j++ {
			src := Mem{Base: in, Disp: 32 * j}
			dst := Mem{Base: out, Disp: 32 * j}
			if seal {
				VPXOR(src, cy[j], cy[j])
				VMOVDQU(cy[j], dst)
				VPSHUFB(yBSWAP, cy[j], dy[j])
			} else {
				VMOVDQU(src, dy[j])
				VPXOR(dy[j], cy[j], cy[j])
				VMOVDQU(cy[j], dst)
				VPSHUFB(yBSWAP, dy[j], dy[j])
			}
		}
		// Last (partial) vector: 1..32 bytes.
		last := k - 1
		MOVQ(n, RAX)
		SUBQ(U32(32*last), RAX)
		loadPartialY(Mem{Base: in, Disp: 32 * last}, dy[last], buf, Y14)
		VPXOR(dy[last], cy[last], cy[last])
		if seal {
			// dy = ciphertext with the bytes past the end cleared.
			MOVQ(RAX, RBX)
			NEGQ(RBX)
			LEAQ(tailMask, RCX)
			VPAND(Mem{Base: RCX, Index: RBX, Scale: 1, Disp: 32}, cy[last], dy[last])
		}
		storePartialY(cy[last], Mem{Base: out, Disp: 32 * last})
		VPSHUFB(yBSWAP, dy[last], dy[last])
		VPXOR(yACC, dy[0], dy[0])
		VPXOR(yACC, yACC, yACC)
		mulAccY(dy[:k], Mem{Base: R13}, false)
		JMP(LabelRef("lenBlock"))
	}

	Label("lenBlock")
	// Length block (bits), byte-swapped: aadbits<<64 | ctbits, plus ACC,
	// times H^1; then the one reduction.
	MOVQ(local.Offset(16), RAX)
	MOVQ(local.Offset(24), RBX)
	SHLQ(U8(3), RAX)
	SHLQ(U8(3), RBX)
	VMOVQ(RAX, X4)
	VPINSRQ(U8(1), RBX, X4, X4)
	VPXOR(X4, X10, X4)
	h1 := htab.Offset(16 * 15)
	// xmm destinations: the upper lanes are zeroed (VEX).
	VPCLMULQDQ(U8(0x00), h1, X4, X0)
	VPCLMULQDQ(U8(0x11), h1, X4, X1)
	VPCLMULQDQ(U8(0x01), h1, X4, X2)
	VPCLMULQDQ(U8(0x10), h1, X4, X4)
	VPXOR(Y0, yLO, yLO)
	VPXOR(Y1, yHI, yHI)
	VPXOR(Y2, yMI, yMI)
	VPXOR(Y4, yMI, yMI)
	reduceY()
	VPSHUFB(X8, X10, X10)
	VPXOR(local, X10, X10)
	if verify {
		// Constant time: VPTEST and SETEQ take the same time whatever
		// the bytes, and no branch depends on them. Go branches on the
		// result only (to zero the output of a failed message).
		MOVQ(local.Offset(recvOff), RAX)
		VPXOR(Mem{Base: RAX}, X10, X10)
		XORL(EBX, EBX)
		VPTEST(X10, X10)
		SETEQ(BL)
		MOVB(BL, Mem{Base: tag})
	} else {
		VMOVDQU(X10, Mem{Base: tag})
	}
	if batch {
		Label("next")
		ADDQ(U32(descSize), descp)
		DECQ(local.Offset(countOff))
		JNZ(LabelRef("msgLoop"))
		// The last short message is still pending.
		MOVQ(local.Offset(prevOff), R12)
		for _, f := range phaseBPieces(verify, R12) {
			f()
		}
		Label("done")
	}
	VZEROUPPER()
	RET()
}

// ---------------------------------------------------------------------------
// AES-CTR keystream (RFC 9605 §4.5.1 CTR suites): 32-bit big-endian counter
// in the last 4 bytes of iv, incremented mod 2^32; 16 blocks per iteration.

func ctrAVX512() {
	TEXT("ctrAVX512", NOSPLIT, "func(k *byte, dst, src []byte, iv *byte)")
	Doc("ctrAVX512 xors src with the AES-CTR keystream for iv into dst.")
	kp, out, in, n, iv := RDI, R8, RSI, RDX, R9
	Load(Param("k"), kp)
	Load(Param("dst").Base(), out)
	Load(Param("src").Base(), in)
	Load(Param("src").Len(), n)
	Load(Param("iv"), iv)

	VMOVDQU64(bswapMem, zBSWAP)
	for i := 0; i < 14; i++ {
		VBROADCASTI32X4(Mem{Base: kp, Disp: offRK + 16*i}, zRK(i))
	}
	MOVQ(Mem{Base: kp, Disp: offNR}, RAX)
	SHLQ(U8(4), RAX)
	VBROADCASTI32X4(Mem{Base: kp, Index: RAX, Scale: 1, Disp: offRK}, zRKL)
	VMOVDQU(Mem{Base: iv}, X0)
	VPSHUFB(X8, X0, X0)
	VSHUFI64X2(U8(0), Z0, Z0, zCTR)
	VPADDD(ctrInit0, zCTR, zCTR) // lanes +0..+3
	VMOVDQU64(ctrInc4, zINC)

	cz := []VecPhysical{Z0, Z1, Z2, Z3}
	Label("loop")
	CMPQ(n, U32(256))
	JB(LabelRef("tail"))
	ctrZ(cz)
	aesZ(cz, kp, false)
	for j := 0; j < 4; j++ {
		VPXORD(Mem{Base: in, Disp: 64 * j}, cz[j], cz[j])
		VMOVDQU64(cz[j], Mem{Base: out, Disp: 64 * j})
	}
	ADDQ(U32(256), in)
	ADDQ(U32(256), out)
	SUBQ(U32(256), n)
	JMP(LabelRef("loop"))

	Label("tail")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	for k := 1; k <= 3; k++ {
		CMPQ(n, U32(64*k))
		JBE(LabelRef(fmt.Sprintf("tail%d", k)))
	}
	JMP(LabelRef("tail4"))
	for k := 4; k >= 1; k-- {
		Label(fmt.Sprintf("tail%d", k))
		ctrZ(cz[:k])
		aesZ(cz[:k], kp, false)
		lastMask(n, 64*(k-1))
		for j := 0; j < k-1; j++ {
			VPXORD(Mem{Base: in, Disp: 64 * j}, cz[j], cz[j])
			VMOVDQU64(cz[j], Mem{Base: out, Disp: 64 * j})
		}
		VMOVDQU8_Z(Mem{Base: in, Disp: 64 * (k - 1)}, K1, Z4)
		VPXORD(Z4, cz[k-1], cz[k-1])
		VMOVDQU8(cz[k-1], K1, Mem{Base: out, Disp: 64 * (k - 1)})
		JMP(LabelRef("done"))
	}
	Label("done")
	VZEROUPPER()
	RET()
}

// ctrAVX2 is ctrAVX512 on ymm (8 blocks per iteration; the last partial
// vector goes through a stack block).
func ctrAVX2() {
	TEXT("ctrAVX2", NOSPLIT, "func(k *byte, dst, src []byte, iv *byte)")
	Doc("ctrAVX2 xors src with the AES-CTR keystream for iv into dst.")
	AllocLocal(32)
	kp, out, in, n, iv := RDI, R8, RSI, RDX, R9
	Load(Param("k"), kp)
	Load(Param("dst").Base(), out)
	Load(Param("src").Base(), in)
	Load(Param("src").Len(), n)
	Load(Param("iv"), iv)
	buf := Mem{Base: RSP}

	VMOVDQU(bswapMem, yBSWAP)
	VMOVDQU(Mem{Base: iv}, X0)
	VPSHUFB(X8, X0, X0)
	VINSERTI128(U8(1), X0, Y0, yCTR)
	VPADDD(ctrInit0, yCTR, yCTR) // lanes +0, +1
	VMOVDQU(ctrInc2, yINC)

	cy := []VecPhysical{Y0, Y1, Y2, Y3}
	Label("loop")
	CMPQ(n, U32(128))
	JB(LabelRef("tail"))
	ctrY(cy)
	aesY(cy, kp)
	for j := 0; j < 4; j++ {
		VPXOR(Mem{Base: in, Disp: 32 * j}, cy[j], cy[j])
		VMOVDQU(cy[j], Mem{Base: out, Disp: 32 * j})
	}
	ADDQ(U32(128), in)
	ADDQ(U32(128), out)
	SUBQ(U32(128), n)
	JMP(LabelRef("loop"))

	Label("tail")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	for k := 1; k <= 3; k++ {
		CMPQ(n, U32(32*k))
		JBE(LabelRef(fmt.Sprintf("tail%d", k)))
	}
	JMP(LabelRef("tail4"))
	for k := 4; k >= 1; k-- {
		Label(fmt.Sprintf("tail%d", k))
		ctrY(cy[:k])
		aesY(cy[:k], kp)
		for j := 0; j < k-1; j++ {
			VPXOR(Mem{Base: in, Disp: 32 * j}, cy[j], cy[j])
			VMOVDQU(cy[j], Mem{Base: out, Disp: 32 * j})
		}
		last := k - 1
		LEAQ(Mem{Base: in, Disp: 32 * last}, R13)
		LEAQ(buf, RCX)
		MOVQ(n, RAX)
		SUBQ(U32(32*last), RAX)
		copyPartial(R13, RCX, RAX, Y14)
		VPXOR(buf, cy[last], cy[last])
		VMOVDQU(cy[last], buf)
		LEAQ(buf, R13)
		LEAQ(Mem{Base: out, Disp: 32 * last}, RCX)
		MOVQ(n, RAX)
		SUBQ(U32(32*last), RAX)
		copyPartial(R13, RCX, RAX, Y14)
		JMP(LabelRef("done"))
	}
	Label("done")
	VZEROUPPER()
	RET()
}

// ---------------------------------------------------------------------------
// AVX2 batch kernels: short messages in a software pipeline.
//
// VPCLMULQDQ issues about once every two cycles at any width on this
// machine, so a short message's GHASH, not its AES, bounds a batch; the
// batch kernels therefore spend as few carry-less multiplies per message
// as they can:
//
//   - The hash input of a short message (AAD blocks, ciphertext blocks,
//     length block: T <= 16 blocks) is laid out as one contiguous stream
//     ending at slot 15 of a 16-block buffer, so it takes ceil(T/2) ymm
//     products with fixed powers (slot i takes htab[i] = H^(16-i)), not
//     one partly empty vector for the AAD, one for the data and an xmm
//     product for the length block.
//   - Each product is Karatsuba (3 VPCLMULQDQ instead of 4) with the
//     per-key table hkar (lo ^ hi of each power).
//
// For a 160-byte message with 36 bytes of AAD that is 7 x 3 + 2 = 23
// carry-less multiplies instead of 8 x 4 + 2 = 34.
//
// The message is done in two phases. Phase A lays out the AAD (before the
// AES rounds: loading it is off the AES chain), makes the keystream and
// E(J0) in one interleaved AES pass, xors and stores the output, and
// stores the byte-swapped ciphertext and the length block into the stream
// in a record on the stack. Phase B hashes the stream, reduces once and
// writes the tag (or, for open, the result of the constant-time tag check).
// Phase B of message i runs between the AES rounds of phase A of message
// i+1: the stream is written with 16- and 32-byte stores at any block
// offset, and the loads that span two stores wait for them to reach the
// cache; placed a message later, that wait is off the critical path.
// Phase A holds Y0-Y6 (keystream), Y14 (E(J0)) and Y8 (byte-swap mask);
// phase B needs only Y7, Y9, Y11-Y13 and Y15. Two records alternate; a
// third, constant one (nothing to hash, tag to a stack slot) is pending at
// the start and after a long message, so the pipeline has no special case
// for its first stage.

// Frame of the AVX2 batch kernels (the single-message layout below 96).
const (
	prevOff     = 80  // *record of the message waiting for phase B
	curOff      = 88  // *record phase A fills next
	dummyTagOff = 96  // 16 bytes: where the constant record's tag goes
	recAOff     = 128 // record A
	recBOff     = recAOff + recSize
	recDOff     = recBOff + recSize // constant record (header only)
	frameBatchY = recDOff + recStream

	// Record fields.
	recEJ0    = 0  // 16 B E(J0)
	recFirst  = 16 // index (0..8) of the first vector of the stream to hash
	recTag    = 24 // *tag (seal) or *result byte (verify)
	recRecv   = 32 // *received tag (verify)
	recLenBlk = 48 // 16 B length block, byte-swapped
	recStream = 64 // slot -1 (a zero block when T is odd), then slots 0..15
	recSlot0  = recStream + 16
	recSize   = recSlot0 + 16*16

	maxShortVs = 7 // data vectors of a short message (224 bytes)
)

// mulKaratsubaY adds v (byte-swapped blocks) times the powers at h to
// LO/MI/HI, Karatsuba style: LO and HI get lo*lo and hi*hi, MI gets
// (lo^hi)*(hk) with hk the matching entries of hkar; MI ^= LO ^ HI must
// follow once the sums are complete. Temporaries Y9, Y15; clobbers v.
func mulKaratsubaY(v VecPhysical, h, hk Mem) {
	VPSHUFD(U8(0x4e), v, Y9)
	VPXOR(v, Y9, Y9)
	VPCLMULQDQ(U8(0x00), h, v, Y15)
	VPCLMULQDQ(U8(0x11), h, v, v)
	VPCLMULQDQ(U8(0x00), hk, Y9, Y9)
	VPXOR(Y15, yLO, yLO)
	VPXOR(v, yHI, yHI)
	VPXOR(Y9, yMI, yMI)
}

// phaseBPieces returns phase B of the message whose record rec points at,
// as self-contained pieces (every branch stays inside its piece) to be
// placed between AES rounds. Uses Y7, Y9, Y11-Y13, Y15 and X8 (byte-swap
// mask, read only); clobbers RAX, RBX, RCX. kp is RDI.
func phaseBPieces(verify bool, rec GPPhysical) []func() {
	f := func(off int) Mem { return Mem{Base: rec, Disp: off} }
	ps := []func(){func() {
		VPXOR(yLO, yLO, yLO)
		VPXOR(yMI, yMI, yMI)
		VPXOR(yHI, yHI, yHI)
	}}
	for j := 0; j < 8; j++ {
		ps = append(ps, func() {
			skip := lbl("pVec")
			CMPQ(f(recFirst), U32(j))
			JA(LabelRef(skip))
			VMOVDQU(f(recSlot0+32*j), Y7)
			mulKaratsubaY(Y7, Mem{Base: RDI, Disp: offHtab + 32*j}, Mem{Base: RDI, Disp: offHkar + 32*j})
			Label(skip)
		})
	}
	return append(ps,
		func() {
			VPXOR(yLO, yMI, yMI)
			VPXOR(yHI, yMI, yMI)
			VPCLMULQDQ(U8(0x10), gfpoly32, yLO, Y15)
			VPSHUFD(U8(0x4e), yLO, yLO)
			VPXOR(yLO, yMI, yMI)
			VPXOR(Y15, yMI, yMI)
		},
		func() {
			VPCLMULQDQ(U8(0x10), gfpoly32, yMI, Y15)
			VPSHUFD(U8(0x4e), yMI, yMI)
			VPXOR(yMI, yHI, yHI)
			VPXOR(Y15, yHI, yHI)
			VEXTRACTI128(U8(1), yHI, X15)
			VPXOR(X15, X13, X7)
		},
		func() {
			VPSHUFB(X8, X7, X7)
			VPXOR(f(recEJ0), X7, X7)
			if verify {
				// Constant time, as in the single-message path.
				MOVQ(f(recRecv), RAX)
				VPXOR(Mem{Base: RAX}, X7, X7)
				XORL(EBX, EBX)
				VPTEST(X7, X7)
				SETEQ(BL)
				MOVQ(f(recTag), RCX)
				MOVB(BL, Mem{Base: RCX})
			} else {
				MOVQ(f(recTag), RAX)
				VMOVDQU(X7, Mem{Base: RAX})
			}
		})
}

// pipelinedShortY emits the batch loop's head: it loads a descriptor's
// lengths, sends long messages to longEntry and runs short ones through
// the pipeline (phase A of this message with phase B of the pending one),
// then jumps to next. Registers as in gcmAVX2: kp RDI, descriptor R14,
// out R8, in RSI, n RDX; in phase A, R10 is the current record, R12 the
// pending one and R9 the current message's first data slot.
func pipelinedShortY(seal, verify bool, kp, descp GPPhysical, buf Mem) {
	local := Mem{Base: RSP}
	out, in, n := R8, RSI, RDX
	cur, prev, dslot := R10, R12, R9

	// The constant record: nothing to hash, tag to a stack slot.
	LEAQ(local.Offset(recDOff), RAX)
	MOVQ(RAX, local.Offset(prevOff))
	LEAQ(local.Offset(recAOff), RAX)
	MOVQ(RAX, local.Offset(curOff))
	LEAQ(local.Offset(dummyTagOff), RBX)
	MOVQ(U32(8), local.Offset(recDOff+recFirst))
	MOVQ(RBX, local.Offset(recDOff+recTag))
	MOVQ(RBX, local.Offset(recDOff+recRecv))
	VPXOR(X0, X0, X0)
	VMOVDQU(X0, local.Offset(recDOff+recEJ0))
	VMOVDQU(X0, local.Offset(dummyTagOff))

	Label("msgLoop")
	aadLen := R10
	MOVQ(Mem{Base: descp, Disp: 16}, n)
	MOVQ(Mem{Base: descp, Disp: 32}, aadLen)
	CMPQ(aadLen, U32(64))
	JA(LabelRef("longEntry"))
	CMPQ(n, U32(32*maxShortVs))
	JA(LabelRef("longEntry"))
	LEAQ(Mem{Base: aadLen, Disp: 15}, RAX)
	SHRQ(U8(4), RAX) // AAD blocks
	LEAQ(Mem{Base: n, Disp: 15}, RBX)
	SHRQ(U8(4), RBX) // data blocks
	ADDQ(RAX, RBX)   // T-1
	CMPQ(RBX, U32(15))
	JA(LabelRef("longEntry"))

	// The stream starts at slot s0 = 16-T = 15-RBX; its first vector is
	// s0/2, and when s0 is odd slot s0-1 must be zero (written always).
	MOVQ(local.Offset(curOff), R12)
	MOVQ(U32(15), RCX)
	SUBQ(RBX, RCX)
	MOVQ(RCX, RBX)
	SHRQ(U8(1), RBX)
	MOVQ(RBX, Mem{Base: R12, Disp: recFirst})
	SHLQ(U8(4), RCX)
	LEAQ(Mem{Base: R12, Index: RCX, Scale: 1, Disp: recSlot0}, dslot) // &slot[s0]
	VPXOR(X7, X7, X7)
	VMOVDQU(X7, Mem{Base: dslot, Disp: -16})
	// Length block (bits), byte-swapped: aadbits<<64 | ctbits; stored
	// into slot 15 after the data (whose zero padding may reach it).
	MOVQ(n, RAX)
	SHLQ(U8(3), RAX)
	MOVQ(aadLen, RBX)
	SHLQ(U8(3), RBX)
	VMOVQ(RAX, X7)
	VPINSRQ(U8(1), RBX, X7, X7)
	VMOVDQU(X7, Mem{Base: R12, Disp: recLenBlk})
	MOVQ(Mem{Base: descp, Disp: 48}, RAX)
	MOVQ(RAX, Mem{Base: R12, Disp: recTag})
	MOVQ(Mem{Base: descp, Disp: 0}, out)
	MOVQ(Mem{Base: descp, Disp: 8}, in)
	if verify {
		LEAQ(Mem{Base: in, Index: n, Scale: 1}, RAX)
		MOVQ(RAX, Mem{Base: R12, Disp: recRecv})
	}
	// AAD (0..64 bytes: up to two vectors, the last zero-padded) into
	// slots s0.., byte-swapped; dslot then moves to the data's first slot.
	aad := R13
	{
		done, part, have := lbl("aadP"), lbl("aadPPart"), lbl("aadPHave")
		MOVQ(Mem{Base: descp, Disp: 24}, aad)
		TESTQ(aadLen, aadLen)
		JZ(LabelRef(done))
		MOVQ(aadLen, RAX)
		CMPQ(RAX, U32(32))
		JB(LabelRef(part))
		VMOVDQU(Mem{Base: aad}, Y7)
		JMP(LabelRef(have))
		Label(part)
		loadPartialY(Mem{Base: aad}, Y7, buf, Y15)
		Label(have)
		VPSHUFB(yBSWAP, Y7, Y7)
		VMOVDQU(Y7, Mem{Base: dslot})
		CMPQ(aadLen, U32(32))
		JBE(LabelRef(done))
		MOVQ(aadLen, RAX)
		SUBQ(U32(32), RAX)
		loadPartialY(Mem{Base: aad, Disp: 32}, Y7, buf, Y15)
		VPSHUFB(yBSWAP, Y7, Y7)
		VMOVDQU(Y7, Mem{Base: dslot, Disp: 32})
		Label(done)
		LEAQ(Mem{Base: aadLen, Disp: 15}, RAX)
		ANDQ(I8(-16), RAX)
		ADDQ(RAX, dslot)
	}
	MOVQ(R12, cur)
	MOVQ(local.Offset(prevOff), prev)

	// J0 (whitened) in Y14, counters from J0+1.
	MOVQ(Mem{Base: descp, Disp: 40}, R11)
	buildJ0(R11, X6)
	VPSHUFB(X8, X6, X9)
	VINSERTI128(U8(1), X9, Y9, yCTR)
	VPADDD(ctrInit2, yCTR, yCTR)
	VPXOR(Mem{Base: kp, Disp: offRK2}, Y6, Y14)
	VMOVDQU(ctrInc2, yINC)
	all := []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6}
	for m := 0; m < maxShortVs; m++ {
		CMPQ(n, U32(32*m))
		JBE(LabelRef(fmt.Sprintf("pipe%d", m)))
	}
	for m := maxShortVs; m >= 0; m-- {
		Label(fmt.Sprintf("pipe%d", m))
		vs := all[:m]
		ctrY(vs)
		for _, v := range vs {
			VPXOR(Mem{Base: kp, Disp: offRK2}, v, v)
		}
		aesYRounds(append(vs[:m:m], Y14), kp, phaseBPieces(verify, prev))
		VMOVDQU(X14, Mem{Base: cur, Disp: recEJ0})
		if m > 0 {
			pipeData(seal, vs, in, out, n, buf, dslot)
		}
		JMP(LabelRef("rotate"))
	}
	// This message is now pending; the next one fills the other record.
	Label("rotate")
	VMOVDQU(Mem{Base: cur, Disp: recLenBlk}, X7)
	VMOVDQU(X7, Mem{Base: cur, Disp: recSlot0 + 16*15})
	MOVQ(cur, local.Offset(prevOff))
	LEAQ(local.Offset(recAOff), RAX)
	LEAQ(local.Offset(recBOff), RBX)
	ADDQ(RBX, RAX)
	SUBQ(cur, RAX)
	MOVQ(RAX, local.Offset(curOff))
	JMP(LabelRef("next"))
}

// pipeData xors the keystream in vs with the n bytes at in into out and
// stores the byte-swapped ciphertext vectors (the last one zero-padded)
// into the stream from dslot on. Clobbers Y14, Y15, RAX, RBX, RCX, R11.
func pipeData(seal bool, vs []VecPhysical, in, out, n GPPhysical, buf Mem, dslot GPPhysical) {
	last := len(vs) - 1
	for j, v := range vs[:last] {
		src, dst := Mem{Base: in, Disp: 32 * j}, Mem{Base: out, Disp: 32 * j}
		save := Mem{Base: dslot, Disp: 32 * j}
		if seal {
			VPXOR(src, v, v)
			VMOVDQU(v, dst)
			VPSHUFB(yBSWAP, v, v)
			VMOVDQU(v, save)
		} else {
			// Load first: out may be in.
			VMOVDQU(src, Y15)
			VPXOR(Y15, v, v)
			VMOVDQU(v, dst)
			VPSHUFB(yBSWAP, Y15, Y15)
			VMOVDQU(Y15, save)
		}
	}
	v := vs[last]
	xorLastPartialY(seal, v, last, in, out, n, buf)
	VPSHUFB(yBSWAP, Y15, Y15)
	VMOVDQU(Y15, Mem{Base: dslot, Disp: 32 * last})
}
