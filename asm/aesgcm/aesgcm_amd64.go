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

//go:noescape
func sealAVX512(k *gcmKey, dst, src, aad []byte, nonce *byte, tag *byte)

//go:noescape
func openAVX512(k *gcmKey, dst, src, aad []byte, nonce *byte, tag *byte)

//go:noescape
func sealAVX2(k *gcmKey, dst, src, aad []byte, nonce *byte, tag *byte)

//go:noescape
func openAVX2(k *gcmKey, dst, src, aad []byte, nonce *byte, tag *byte)

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
	switch current {
	case implAVX512:
		n := len(plaintext)
		sealAVX512(a.k, out[:n], plaintext, aad, unsafe.SliceData(nonce), &out[n])
	case implAVX2:
		n := len(plaintext)
		sealAVX2(a.k, out[:n], plaintext, aad, unsafe.SliceData(nonce), &out[n])
	default:
		a.sealGeneric(out, nonce, plaintext, aad)
	}
}

func (a *AEAD) open(out, nonce, ciphertext, aad []byte) bool {
	n := len(ciphertext) - TagSize
	var tag [TagSize]byte
	switch current {
	case implAVX512:
		openAVX512(a.k, out[:n], ciphertext[:n], aad, unsafe.SliceData(nonce), &tag[0])
	case implAVX2:
		openAVX2(a.k, out[:n], ciphertext[:n], aad, unsafe.SliceData(nonce), &tag[0])
	default:
		return a.openGeneric(out, nonce, ciphertext, aad)
	}
	return verifyTag(out, &tag, ciphertext[n:])
}

func (a *AEAD) sealBatch(msgs []Message) {
	for i := range msgs {
		m := &msgs[i]
		a.seal(m.Out, m.Nonce, m.In, m.AAD)
	}
}

func (a *AEAD) openBatch(msgs []Message) int {
	failed := 0
	for i := range msgs {
		m := &msgs[i]
		if len(m.In) < TagSize || uint64(len(m.In)) > maxPlaintext+TagSize || !a.open(m.Out, m.Nonce, m.In, m.AAD) {
			clear(m.Out)
			m.Err = ErrOpen
			failed++
		} else {
			m.Err = nil
		}
	}
	return failed
}
