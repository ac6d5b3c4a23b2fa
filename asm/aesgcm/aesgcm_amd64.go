//go:build amd64 && !purego

package aesgcm

import (
	"unsafe"

	"github.com/klauspost/cpuid/v2"
)

// gcmKey is the precomputed per-key state of the assembly kernels. Its
// layout is hard-coded in _asm/main.go (checked by TestKeyLayout).
type gcmKey struct {
	nr   uint64        // 10 or 14
	_    uint64        // padding
	rk   [15 * 16]byte // round keys
	rk2  [15 * 32]byte // round keys duplicated in both halves (ymm)
	htab [32 * 16]byte // H^16..H^1 (times x, byte-swapped), 256 zero bytes
}

//go:noescape
func initKeyAsm(k *gcmKey, key []byte)

// batchDesc describes one message for the assembly kernels, which loop
// over an array of them with the key schedule and constants loaded once.
// Layout hard-coded in _asm/main.go (descSize = 56).
type batchDesc struct {
	out, in *byte
	n       int
	aad     *byte
	aadLen  int
	nonce   *byte
	tag     *byte // seal: &out[n]; open: where the computed tag is written
}

// Single-message kernels (arguments passed directly; cheapest for one call).

//go:noescape
func sealAVX512(k *gcmKey, dst, src, aad []byte, nonce *byte, tag *byte)

//go:noescape
func openAVX512(k *gcmKey, dst, src, aad []byte, nonce *byte, tag *byte)

//go:noescape
func sealAVX2(k *gcmKey, dst, src, aad []byte, nonce *byte, tag *byte)

//go:noescape
func openAVX2(k *gcmKey, dst, src, aad []byte, nonce *byte, tag *byte)

// Batch kernels: loop over count descriptors in assembly.

//go:noescape
func sealBatchAVX512(k *gcmKey, d *batchDesc, count int)

//go:noescape
func openBatchAVX512(k *gcmKey, d *batchDesc, count int)

//go:noescape
func sealBatchAVX2(k *gcmKey, d *batchDesc, count int)

//go:noescape
func openBatchAVX2(k *gcmKey, d *batchDesc, count int)

// batchChunk is how many messages are described (on the stack) per
// assembly call.
const batchChunk = 16

const (
	implAVX512 = iota
	implAVX2
	implGeneric
)

var (
	hasAVX512 = cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512BW, cpuid.AVX512VL,
		cpuid.VAES, cpuid.VPCLMULQDQ, cpuid.AESNI, cpuid.CLMUL, cpuid.BMI2, cpuid.AVX2)
	hasAVX2 = cpuid.CPU.Supports(cpuid.AVX2, cpuid.VAES, cpuid.VPCLMULQDQ,
		cpuid.AESNI, cpuid.CLMUL, cpuid.BMI2)
)

var impls = []implementation{
	implAVX512:  {name: "avx512", available: hasAVX512},
	implAVX2:    {name: "avx2", available: hasAVX2},
	implGeneric: {name: "generic", available: true},
}

var current = func() int {
	for i, im := range impls {
		if im.available {
			return i
		}
	}
	return implGeneric
}()

func newKey(key []byte) *gcmKey {
	if !hasAVX512 && !hasAVX2 {
		return nil
	}
	k := new(gcmKey)
	initKeyAsm(k, key)
	return k
}

func (a *AEAD) seal(out, nonce, plaintext, aad []byte) {
	if current != implAVX512 && current != implAVX2 {
		a.sealGeneric(out, nonce, plaintext, aad)
		return
	}
	n := len(plaintext)
	if current == implAVX512 {
		sealAVX512(a.k, out[:n], plaintext, aad, unsafe.SliceData(nonce), &out[n])
	} else {
		sealAVX2(a.k, out[:n], plaintext, aad, unsafe.SliceData(nonce), &out[n])
	}
}

func (a *AEAD) open(out, nonce, ciphertext, aad []byte) bool {
	if current != implAVX512 && current != implAVX2 {
		return a.openGeneric(out, nonce, ciphertext, aad)
	}
	n := len(ciphertext) - TagSize
	var tag [TagSize]byte
	if current == implAVX512 {
		openAVX512(a.k, out[:n], ciphertext[:n], aad, unsafe.SliceData(nonce), &tag[0])
	} else {
		openAVX2(a.k, out[:n], ciphertext[:n], aad, unsafe.SliceData(nonce), &tag[0])
	}
	return verifyTag(out, &tag, ciphertext[n:])
}

func (a *AEAD) sealBatch(msgs []Message) {
	if current != implAVX512 && current != implAVX2 {
		a.sealBatchGeneric(msgs)
		return
	}
	if len(msgs) == 1 {
		m := &msgs[0]
		a.seal(m.Out, m.Nonce, m.In, m.AAD)
		return
	}
	var ds [batchChunk]batchDesc
	for len(msgs) > 0 {
		c := min(len(msgs), batchChunk)
		for i := range c {
			m := &msgs[i]
			n := len(m.In)
			// Field by field: 8-byte stores that the kernel's 8-byte
			// loads can forward from (a composite literal is copied
			// with 16-byte moves, which measured ~25 ns slower).
			ds[i].out = unsafe.SliceData(m.Out)
			ds[i].in = unsafe.SliceData(m.In)
			ds[i].n = n
			ds[i].aad = unsafe.SliceData(m.AAD)
			ds[i].aadLen = len(m.AAD)
			ds[i].nonce = unsafe.SliceData(m.Nonce)
			ds[i].tag = &m.Out[n]
		}
		runSeal(a.k, &ds[0], c)
		msgs = msgs[c:]
	}
}

func (a *AEAD) openBatch(msgs []Message) int {
	if current != implAVX512 && current != implAVX2 {
		return a.openBatchWith(msgs, a.openStd)
	}
	failed := 0
	var ds [batchChunk]batchDesc
	var tags [batchChunk][TagSize]byte
	var idx [batchChunk]int
	for len(msgs) > 0 {
		// Describe up to batchChunk openable messages.
		c, used := 0, 0
		for used < len(msgs) && c < batchChunk {
			m := &msgs[used]
			if len(m.In) < TagSize || uint64(len(m.In)) > maxPlaintext+TagSize {
				clear(m.Out)
				m.Err = ErrOpen
				failed++
				used++
				continue
			}
			ds[c].out = unsafe.SliceData(m.Out)
			ds[c].in = unsafe.SliceData(m.In)
			ds[c].n = len(m.In) - TagSize
			ds[c].aad = unsafe.SliceData(m.AAD)
			ds[c].aadLen = len(m.AAD)
			ds[c].nonce = unsafe.SliceData(m.Nonce)
			ds[c].tag = &tags[c][0]
			idx[c] = used
			c++
			used++
		}
		if c > 0 {
			runOpen(a.k, &ds[0], c)
		}
		for i := range c {
			m := &msgs[idx[i]]
			if verifyTag(m.Out, &tags[i], m.In[len(m.In)-TagSize:]) {
				m.Err = nil
			} else {
				m.Err = ErrOpen
				failed++
			}
		}
		msgs = msgs[used:]
	}
	return failed
}

// runSeal and runOpen call the selected kernel directly (a call through a
// func value would lose //go:noescape and make the descriptors escape).
func runSeal(k *gcmKey, d *batchDesc, count int) {
	if current == implAVX512 {
		sealBatchAVX512(k, d, count)
	} else {
		sealBatchAVX2(k, d, count)
	}
}

func runOpen(k *gcmKey, d *batchDesc, count int) {
	if current == implAVX512 {
		openBatchAVX512(k, d, count)
	} else {
		openBatchAVX2(k, d, count)
	}
}

//go:noescape
func ctrAVX512(k *gcmKey, dst, src []byte, iv *[16]byte)

//go:noescape
func ctrAVX2(k *gcmKey, dst, src []byte, iv *[16]byte)

// xorKeyStream uses the zmm or ymm VAES kernel for the selected
// implementation and crypto/aes for "generic".
func (c *CTR) xorKeyStream(dst, src []byte, iv *[16]byte) {
	switch current {
	case implAVX512:
		ctrAVX512(c.k, dst, src, iv)
	case implAVX2:
		ctrAVX2(c.k, dst, src, iv)
	default:
		c.xorKeyStreamGeneric(dst, src, iv)
	}
}
