package aesgcm

import (
	"crypto/cipher"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

var (
	benchSizes   = []int{64, 160, 1200, 16384}
	benchBatches = []int{1, 8, 32}
	benchAAD     = make([]byte, 8) // a typical SFrame header length
)

// stdlibNsPerSeal returns crypto/cipher's ns per Seal for the given key and
// message size, measured once per process (best of 5 x 20 ms of thread CPU
// time), for the x-stdlib metric.
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
	for i := 0; i < 5; i++ {
		ns := nsPerOp(func() { g.Seal(dst[:0], nonce, pt, benchAAD) }, 20*time.Millisecond)
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
						restore, _ := selectImpl(impl)
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
					restore, _ := selectImpl(impl)
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
							restore, _ := selectImpl(impl)
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

// nsPerOp times f over about d of thread CPU time (Linux; wall time
// elsewhere) and returns ns per call.
func nsPerOp(f func(), d time.Duration) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n := 1
	for {
		start := threadCPU()
		for i := 0; i < n; i++ {
			f()
		}
		el := threadCPU() - start
		if el >= d {
			return float64(el.Nanoseconds()) / float64(n)
		}
		if el < d/10 {
			n *= 10
		} else {
			n *= 2
		}
	}
}

// TestRatioTable prints a table of throughput and speed-up versus
// crypto/cipher for AES-GCM seal. The stdlib baseline and every
// implementation are measured alternately (rounds of 20 ms, best of
// AESGCM_ROUNDS, default 7) so that a busy machine affects both alike. Run:
//
//	AESGCM_RATIO=1 go test -run TestRatioTable -v ./asm/aesgcm/
func TestRatioTable(t *testing.T) {
	if os.Getenv("AESGCM_RATIO") == "" {
		t.Skip("set AESGCM_RATIO=1 to print the ratio table")
	}
	rounds := 7
	if v, err := strconv.Atoi(os.Getenv("AESGCM_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	for _, ks := range keySizes {
		key := make([]byte, ks)
		t.Logf("AES-%d-GCM seal, AAD %d B; MB/s (x stdlib Seal); best of %d rounds (thread CPU time: %v)", ks*8, len(benchAAD), rounds, haveThreadCPU)
		t.Logf("%-8s %8s %16s %16s %16s %16s", "impl", "size", "Seal", "batch1", "batch8", "batch32")
		for _, size := range benchSizes {
			type row struct {
				name string
				fs   []func()
				ns   []float64
			}
			pt := make([]byte, size)
			dst := make([]byte, 0, size+16)
			nonce := make([]byte, 12)
			g := stdGCM(t, key)
			rows := []*row{{name: "stdlib"}}
			rows[0].fs = append(rows[0].fs, func() { g.Seal(dst[:0], nonce, pt, benchAAD) })
			for _, count := range benchBatches {
				msgs := batchMsgs(count, size)
				rows[0].fs = append(rows[0].fs, func() {
					for i := range msgs {
						m := &msgs[i]
						g.Seal(m.Out[:0], m.Nonce, m.In, m.AAD)
					}
				})
			}
			for _, impl := range Implementations() {
				restore, _ := selectImpl(impl)
				a, _ := New(key)
				restore()
				r := &row{name: impl}
				sel := func(f func()) func() {
					return func() {
						restore, _ := selectImpl(impl)
						f()
						restore()
					}
				}
				r.fs = append(r.fs, sel(func() { a.Seal(dst[:0], nonce, pt, benchAAD) }))
				for _, count := range benchBatches {
					msgs := batchMsgs(count, size)
					r.fs = append(r.fs, sel(func() { a.SealBatch(msgs) }))
				}
				rows = append(rows, r)
			}
			for _, r := range rows {
				r.ns = make([]float64, len(r.fs))
			}
			for round := 0; round < rounds; round++ {
				for _, r := range rows {
					for i, f := range r.fs {
						ns := nsPerOp(f, 20*time.Millisecond)
						if i > 0 {
							ns /= float64(benchBatches[i-1])
						}
						if r.ns[i] == 0 || ns < r.ns[i] {
							r.ns[i] = ns
						}
					}
				}
			}
			base := rows[0].ns[0]
			for _, r := range rows {
				line := fmt.Sprintf("%-8s %8d", r.name, size)
				for _, ns := range r.ns {
					line += fmt.Sprintf(" %8.0f (%4.2fx)", float64(size)/ns*1e3, base/ns)
				}
				t.Log(line)
			}
		}
	}
}
