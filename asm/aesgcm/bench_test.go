package aesgcm

import (
	"crypto/cipher"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

var (
	benchSizes   = []int{64, 160, 1200, 16384}
	benchBatches = []int{1, 8, 32}
	benchAAD     = make([]byte, 8) // a typical SFrame header length
)

// stdlibBaseline returns crypto/cipher's ns per Seal for the given key and
// message size, measured once per process.
var (
	baselineMu sync.Mutex
	baseline   = map[[2]int]float64{}
)

func stdlibNsPerSeal(keySize, size int) float64 {
	baselineMu.Lock()
	defer baselineMu.Unlock()
	if v, ok := baseline[[2]int{keySize, size}]; ok {
		return v
	}
	g := stdGCM(nil, make([]byte, keySize))
	pt := make([]byte, size)
	dst := make([]byte, 0, size+16)
	nonce := make([]byte, 12)
	best := 0.0
	for i := 0; i < 3; i++ {
		r := testing.Benchmark(func(b *testing.B) {
			for b.Loop() {
				g.Seal(dst[:0], nonce, pt, benchAAD)
			}
		})
		ns := float64(r.T.Nanoseconds()) / float64(r.N)
		if best == 0 || ns < best {
			best = ns
		}
	}
	baseline[[2]int{keySize, size}] = best
	return best
}

func benchImpls() []string { return append(Implementations(), "stdlib") }

func BenchmarkSeal(b *testing.B) {
	for _, impl := range benchImpls() {
		for _, ks := range keySizes {
			for _, size := range benchSizes {
				b.Run(fmt.Sprintf("%s/AES-%d/%d", impl, ks*8, size), func(b *testing.B) {
					key := make([]byte, ks)
					var aead cipher.AEAD
					if impl == "stdlib" {
						aead = stdGCM(b, key)
					} else {
						restore, _ := SetImplementation(impl)
						defer restore()
						aead, _ = New(key)
					}
					pt := make([]byte, size)
					dst := make([]byte, 0, size+16)
					nonce := make([]byte, 12)
					b.SetBytes(int64(size))
					b.ReportAllocs()
					for b.Loop() {
						aead.Seal(dst[:0], nonce, pt, benchAAD)
					}
					ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
					b.ReportMetric(stdlibNsPerSeal(ks, size)/ns, "x-stdlib")
				})
			}
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, impl := range benchImpls() {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/AES-128/%d", impl, size), func(b *testing.B) {
				key := make([]byte, 16)
				var aead cipher.AEAD
				if impl == "stdlib" {
					aead = stdGCM(b, key)
				} else {
					restore, _ := SetImplementation(impl)
					defer restore()
					aead, _ = New(key)
				}
				nonce := make([]byte, 12)
				ct := aead.Seal(nil, nonce, make([]byte, size), benchAAD)
				dst := make([]byte, 0, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := aead.Open(dst[:0], nonce, ct, benchAAD); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func batchMsgs(count, size int) []Message {
	msgs := make([]Message, count)
	for i := range msgs {
		msgs[i] = Message{
			Nonce: make([]byte, 12),
			AAD:   benchAAD,
			In:    make([]byte, size),
			Out:   make([]byte, size+16),
		}
		msgs[i].Nonce[0] = byte(i)
	}
	return msgs
}

func BenchmarkSealBatch(b *testing.B) {
	for _, impl := range benchImpls() {
		for _, ks := range keySizes {
			for _, size := range benchSizes {
				for _, count := range benchBatches {
					b.Run(fmt.Sprintf("%s/AES-%d/%d/batch%d", impl, ks*8, size, count), func(b *testing.B) {
						key := make([]byte, ks)
						msgs := batchMsgs(count, size)
						b.SetBytes(int64(size * count))
						b.ReportAllocs()
						if impl == "stdlib" {
							g := stdGCM(b, key)
							for b.Loop() {
								for i := range msgs {
									m := &msgs[i]
									g.Seal(m.Out[:0], m.Nonce, m.In, m.AAD)
								}
							}
						} else {
							restore, _ := SetImplementation(impl)
							defer restore()
							a, _ := New(key)
							for b.Loop() {
								a.SealBatch(msgs)
							}
						}
						ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(count)
						b.ReportMetric(stdlibNsPerSeal(ks, size)/ns, "x-stdlib")
					})
				}
			}
		}
	}
}

// TestRatioTable prints a table of throughput and speed-up versus
// crypto/cipher for AES-128-GCM seal. Run with:
//
//	AESGCM_RATIO=1 go test -run TestRatioTable -v ./asm/aesgcm/
func TestRatioTable(t *testing.T) {
	if os.Getenv("AESGCM_RATIO") == "" {
		t.Skip("set AESGCM_RATIO=1 to print the ratio table")
	}
	measure := func(f func()) float64 {
		best := 0.0
		for i := 0; i < 5; i++ {
			r := testing.Benchmark(func(b *testing.B) {
				for b.Loop() {
					f()
				}
			})
			ns := float64(r.T.Nanoseconds()) / float64(r.N)
			if best == 0 || ns < best {
				best = ns
			}
		}
		return best
	}
	for _, ks := range keySizes {
		t.Logf("AES-%d-GCM seal, AAD 8 B, best of 5 (MB/s and x stdlib per message)", ks*8)
		t.Logf("%-8s %-7s %7s %12s %12s %8s", "impl", "size", "batch", "ns/msg", "MB/s", "x-stdlib")
		key := make([]byte, ks)
		for _, size := range benchSizes {
			base := stdlibNsPerSeal(ks, size)
			t.Logf("%-8s %-7d %7d %12.1f %12.0f %8.2f", "stdlib", size, 1, base, float64(size)/base*1e3, 1.0)
			for _, impl := range Implementations() {
				restore, _ := SetImplementation(impl)
				a, _ := New(key)
				for _, count := range benchBatches {
					msgs := batchMsgs(count, size)
					ns := measure(func() { a.SealBatch(msgs) }) / float64(count)
					t.Logf("%-8s %-7d %7d %12.1f %12.0f %8.2f", impl, size, count, ns, float64(size)/ns*1e3, base/ns)
				}
				pt := make([]byte, size)
				dst := make([]byte, 0, size+16)
				nonce := make([]byte, 12)
				ns := measure(func() { a.Seal(dst[:0], nonce, pt, benchAAD) })
				t.Logf("%-8s %-7d %7s %12.1f %12.0f %8.2f", impl, size, "Seal", ns, float64(size)/ns*1e3, base/ns)
				restore()
			}
		}
		_ = time.Now
	}
}
