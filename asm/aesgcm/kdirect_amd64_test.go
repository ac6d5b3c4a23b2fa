//go:build amd64 && !purego

package aesgcm

import (
	"testing"
	"unsafe"
)

// BenchmarkKernelDirect separates the assembly cost of one 160-byte seal
// from the Go wrapper (diagnostic; AVX-512 only).
func BenchmarkKernelDirect(b *testing.B) {
	if !hasAVX512 {
		b.Skip("no AVX-512")
	}
	a, _ := New(make([]byte, 16))
	pt := make([]byte, 160)
	out := make([]byte, 176)
	nonce := make([]byte, 12)
	d := batchDesc{out: &out[0], in: &pt[0], n: 160, aad: &benchAAD[0], aadLen: 8, nonce: unsafe.SliceData(nonce), tag: &out[160]}
	b.Run("asm", func(b *testing.B) {
		for b.Loop() {
			sealBatchAVX512(a.k, &d, 1)
		}
	})
	b.Run("seal", func(b *testing.B) {
		for b.Loop() {
			a.seal(out, nonce, pt, benchAAD)
		}
	})
	b.Run("Seal", func(b *testing.B) {
		for b.Loop() {
			a.Seal(out[:0], nonce, pt, benchAAD)
		}
	})
}
