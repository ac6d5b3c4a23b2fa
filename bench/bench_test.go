package bench

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/sframe"
)

// baselines caches the stdlib AES-GCM speed per (suite, op, size) so every
// sub-benchmark can report its ratio against a baseline from this process.
var baselines sync.Map

func baselineNs(b *testing.B, suite sframe.CipherSuite, op string, size int) float64 {
	key := fmt.Sprint(aesKeyLen(suite), op, size)
	if v, ok := baselines.Load(key); ok {
		return v.(float64)
	}
	w, err := StdlibGCM(suite, op, size)
	if err != nil {
		b.Fatal(err)
	}
	ns := Measure(w, 1, 50*time.Millisecond, 3).NsPerObject
	baselines.Store(key, ns)
	return ns
}

func benchmark(b *testing.B, op string, mk func(sframe.CipherSuite, int) (Workload, error)) {
	for _, suite := range DefaultOptions().Suites {
		for _, size := range DefaultOptions().Sizes {
			b.Run(fmt.Sprintf("%s/%d", suite, size), func(b *testing.B) {
				base := baselineNs(b, suite, op, size)
				w, err := mk(suite, size)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				w(b.N)
				b.StopTimer()
				ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				b.ReportMetric(base/ns, "x-stdlib")
			})
		}
	}
}

func BenchmarkSeal(b *testing.B) { benchmark(b, "seal", SFrameSeal) }
func BenchmarkOpen(b *testing.B) { benchmark(b, "open", SFrameOpen) }

// BenchmarkStdlibGCM is the baseline on its own, for benchstat comparisons.
func BenchmarkStdlibGCM(b *testing.B) {
	for _, op := range []string{"seal", "open"} {
		for _, size := range DefaultOptions().Sizes {
			b.Run(fmt.Sprintf("%s/AES-128/%d", op, size), func(b *testing.B) {
				w, _ := StdlibGCM(sframe.AES128GCMSHA256_128, op, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				w(b.N)
			})
		}
	}
}

// The harness must produce finite, positive measurements, and each ratio
// must be the row's own throughput over its own stdlib baseline. (How large
// the ratio is, is a benchmark figure, not something a test can assert on a
// shared machine.)
func TestRunProducesRatios(t *testing.T) {
	opts := Options{Suites: []sframe.CipherSuite{sframe.AES128GCMSHA256_128}, Ops: []string{"seal", "open"},
		Sizes: []int{1200}, MinTime: 5 * time.Millisecond, Rounds: 1}
	var rows []Result
	if err := Run(opts, func(r Result) { rows = append(rows, r) }); err != nil {
		t.Fatal(err)
	}
	ops := map[string]int{}
	for _, r := range rows {
		ops[r.Op]++
	}
	// seal and open at batch 1, plus the raw AEAD alone and batched, and
	// SFrame timed against it at both.
	if len(rows) != 6 || ops["seal"] != 1 || ops["open"] != 1 || ops["aead-seal"] != 2 || ops["sframe-vs-aead"] != 2 {
		t.Fatalf("rows by op %v", ops)
	}
	for _, r := range rows {
		if !(r.GBps > 0 && r.StdlibGBps > 0 && !math.IsInf(r.GBps, 0) && !math.IsInf(r.StdlibGBps, 0)) ||
			math.Abs(r.Ratio-r.GBps/r.StdlibGBps) > 1e-9*r.Ratio {
			t.Errorf("implausible row %+v", r)
		}
	}
}

// BenchmarkPipelineWorkers seals 1200-byte objects of 30 tracks through a
// stage with 1 and with 2 workers, and reports the 2-worker speed-up
// measured in the same process.
func BenchmarkPipelineWorkers(b *testing.B) {
	one, stop1, err := PipelineSeal(sframe.AES128GCMSHA256_128, 1, 30, 1200)
	if err != nil {
		b.Fatal(err)
	}
	defer stop1()
	base := Measure(one, 1, 100*time.Millisecond, 3).NsPerObject
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			w, stop, err := PipelineSeal(sframe.AES128GCMSHA256_128, workers, 30, 1200)
			if err != nil {
				b.Fatal(err)
			}
			defer stop()
			b.SetBytes(1200)
			b.ReportAllocs()
			b.ResetTimer()
			w(b.N)
			b.StopTimer()
			b.ReportMetric(base/(float64(b.Elapsed().Nanoseconds())/float64(b.N)), "x-1worker")
		})
	}
	// Thread CPU time, which other processes on a shared machine disturb
	// less than wall time: the producer's own thread, per object, with 1
	// and 2 workers in alternating rounds (fastest of each). With 1 worker
	// the producer does everything; with 2 it seals one shard's half and
	// is the longer of the two sealing goroutines (it also produces every
	// object and queues the other half), so the ratio estimates what two
	// cores with nothing else to run would give (x-1worker-cpu). It is an
	// estimate, not the goal's figure: it leaves out the time the producer
	// waits, and a sibling core busy with the other half can slow this one.
	b.Run("cpu", func(b *testing.B) {
		one, stop1, err := PipelineSeal(sframe.AES128GCMSHA256_128, 1, 30, 1200)
		if err != nil {
			b.Fatal(err)
		}
		defer stop1()
		two, stop2, err := PipelineSeal(sframe.AES128GCMSHA256_128, 2, 30, 1200)
		if err != nil {
			b.Fatal(err)
		}
		defer stop2()
		m2, m1 := MeasurePair(two, 1, one, 20*time.Millisecond, max(3, min(b.N/1000, 10)))
		b.ReportMetric(m1.NsPerObject, "producer-cpu-ns/obj-1worker")
		b.ReportMetric(m2.NsPerObject, "producer-cpu-ns/obj-2workers")
		b.ReportMetric(m1.NsPerObject/m2.NsPerObject, "x-1worker-cpu")
	})
	// The ceiling: 2 goroutines sealing with no stage, against 1, measured
	// in the same process (the most two cores give the machine at hand).
	one1, err := ParallelSeal(sframe.AES128GCMSHA256_128, 1, 1200)
	if err != nil {
		b.Fatal(err)
	}
	base1 := Measure(one1, 1, 100*time.Millisecond, 3).NsPerObject
	b.Run("parallel=2", func(b *testing.B) {
		w, err := ParallelSeal(sframe.AES128GCMSHA256_128, 2, 1200)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(1200)
		b.ReportAllocs()
		b.ResetTimer()
		w(b.N)
		b.StopTimer()
		b.ReportMetric(base1/(float64(b.Elapsed().Nanoseconds())/float64(b.N)), "x-1goroutine")
	})
}

// BenchmarkSFrameOverhead seals 1200-byte objects in batches of 32 with
// Sender.SealBatch and with the bare AES-GCM batch kernel (RawAEADSeal),
// in alternating rounds of thread CPU time, and reports SFrame's cost over
// the raw AEAD in percent (the issue 13 goal: <= 10%). Rounds are short
// (2 ms, 50 of each): on a shared machine most of them then run without
// being descheduled, so the fastest of each is the code's own speed rather
// than that of caches another process just refilled.
func BenchmarkSFrameOverhead(b *testing.B) {
	for _, size := range []int{160, 1200} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			s, err := SFrameSealBatch(sframe.AES128GCMSHA256_128, size, 32)
			if err != nil {
				b.Fatal(err)
			}
			raw, err := RawAEADSeal(sframe.AES128GCMSHA256_128, size, 32)
			if err != nil {
				b.Fatal(err)
			}
			rounds := max(3, int(b.N/1000))
			m, r := MeasurePairN(s, 32, raw, 32, 2*time.Millisecond, min(rounds, 50))
			b.ReportMetric(100*(m.NsPerObject/r.NsPerObject-1), "%-over-raw")
			b.ReportMetric(m.NsPerObject, "ns/object")
		})
	}
}
