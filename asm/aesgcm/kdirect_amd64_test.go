//go:build amd64 && !purego

package aesgcm

import (
	"fmt"
	"testing"
	"time"
	"unsafe"

	"github.com/moqsframe/moqsframe/internal/cputime"
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

// BenchmarkBatchKernel times the batch kernels alone (no Go code around
// them) on 32 descriptors, per message, as the best of -aesgcm.rounds
// rounds of thread CPU time (the ns-per-msg metric). AAD 8 B is the bench
// default, 36 B about what package sframe passes (a 4-8 byte header and a
// typical MoQ metadata). Diagnostic for the per-message cost of short
// messages. Run:
//
//	go test -run '^$' -bench 'BatchKernel/.*/.*/.*/aad36' -benchtime 10ms ./asm/aesgcm/ -args -aesgcm.rounds 5
func BenchmarkBatchKernel(b *testing.B) {
	type kernel struct {
		name string
		f    func(k *gcmKey, d *batchDesc, count int)
	}
	var ks []kernel
	if hasAVX512 {
		ks = append(ks, kernel{"seal/avx512", sealBatchAVX512}, kernel{"open/avx512", openBatchAVX512})
	}
	if hasAVX2 {
		ks = append(ks, kernel{"seal/avx2", sealBatchAVX2}, kernel{"open/avx2", openVerifyBatchAVX2})
	}
	a, _ := New(make([]byte, 16))
	for _, k := range ks {
		for _, size := range []int{64, 160, 1200, 16384} {
			for _, aadLen := range []int{8, 36} {
				b.Run(fmt.Sprintf("%s/%d/aad%d", k.name, size, aadLen), func(b *testing.B) {
					const count = 32
					ds := make([]batchDesc, count)
					tags := make([]byte, 16*count)
					aad := make([]byte, aadLen)
					nonce := make([]byte, 12)
					for i := range ds {
						in := make([]byte, size+16)
						out := make([]byte, size+16)
						ds[i] = batchDesc{out: &out[0], in: &in[0], n: size, aad: &aad[0], aadLen: aadLen, nonce: &nonce[0], tag: &tags[16*i]}
					}
					run := func() { k.f(a.k, &ds[0], count) }
					for b.Loop() {
						run()
					}
					best := 0.0
					for range *ratioRounds {
						if ns := cputime.PerCall(run, 20*time.Millisecond) / count; best == 0 || ns < best {
							best = ns
						}
					}
					b.ReportMetric(best, "ns/msg")
				})
			}
		}
	}
}
