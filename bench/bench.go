// Package bench measures SFrame throughput against Go's standard-library
// AES-GCM, measured in the same process and run so that ratios are honest on
// any machine. `sframe bench` prints its results; bench_test.go exposes the
// same workloads to `go test -bench`.
package bench

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"github.com/moqsframe/moqsframe/internal/cputime"
	"runtime"
	"slices"
	"time"

	"github.com/moqsframe/moqsframe/asm/aesgcm"
	"github.com/moqsframe/moqsframe/internal/impl"
	"github.com/moqsframe/moqsframe/sframe"
)

// Result is one measured row.
type Result struct {
	Suite string `json:"suite"`
	// Op is "seal" or "open"; "aead-seal" (the raw AEAD with SFrame's
	// AAD); "sframe-vs-aead", SFrame's seal timed alternating with the raw
	// AEAD, whose speed then stands in StdlibGBps and Ratio (raw over
	// SFrame: 0.9 means SFrame costs 11% more); the CTR+HMAC baselines
	// "ctr-hmac-stdlib" and "sha256", and "seal-vs-ctr-hmac-stdlib" and
	// "seal-vs-sha256", SFrame's seal timed alternating with that baseline,
	// whose speed then stands in StdlibGBps and Ratio; pipeline rows.
	Op              string  `json:"op"`
	Size            int     `json:"size"`
	Batch           int     `json:"batch"`
	Path            string  `json:"path"`
	NsPerObject     float64 `json:"ns_per_object"`
	GBps            float64 `json:"gbps"`
	StdlibGBps      float64 `json:"stdlib_gbps"`
	Ratio           float64 `json:"ratio"`
	AllocsPerObject float64 `json:"allocs_per_object"`
	// Workers is set for pipeline rows: the number of stage workers.
	Workers int `json:"workers,omitempty"`
}

// ThreadCPUTime reports whether single-goroutine rows are timed in thread
// CPU time rather than wall-clock time (where the OS has no thread clock).
const ThreadCPUTime = cputime.ThreadAvailable

// Workload processes iters rounds of batch objects of size bytes each.
type Workload func(iters int)

// Measurement is the speed of a workload.
type Measurement struct {
	NsPerObject     float64
	AllocsPerObject float64
}

// GBps converts a measurement at size bytes per object to gigabytes per
// second.
func (m Measurement) GBps(size int) float64 { return float64(size) / m.NsPerObject }

// Measure runs w long enough to take minTime, rounds times, and returns the
// fastest round (the least disturbed by the rest of the machine) and the
// allocations of one extra run.
func Measure(w Workload, objectsPerIter int, minTime time.Duration, rounds int) Measurement {
	w(1) // warm up pools and caches
	iters := 1
	for {
		start := time.Now()
		w(iters)
		if d := time.Since(start); d >= minTime/4 || iters >= 1<<30 {
			iters = int(float64(iters) * float64(minTime) / float64(max(d, time.Microsecond)))
			break
		}
		iters *= 4
	}
	iters = max(iters, 1)
	best := time.Duration(1<<63 - 1)
	for range rounds {
		start := time.Now()
		w(iters)
		best = min(best, time.Since(start))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	w(iters)
	runtime.ReadMemStats(&after)
	objects := float64(iters * objectsPerIter)
	return Measurement{
		NsPerObject:     float64(best.Nanoseconds()) / objects,
		AllocsPerObject: float64(after.Mallocs-before.Mallocs) / objects,
	}
}

// MeasureCPU is Measure for a workload that runs on the calling goroutine
// alone, timed in the CPU time of its OS thread (on Linux; elsewhere wall
// time), so that other processes on a shared machine do not count.
func MeasureCPU(w Workload, objectsPerIter int, minTime time.Duration, rounds int) Measurement {
	m, _ := MeasurePair(w, objectsPerIter, nil, minTime, rounds)
	return m
}

// MeasurePair measures w and, when base is not nil, its baseline base (one
// object per iteration) the way MeasureCPU does, alternating one round of
// each, so both see the same state of a shared machine and their ratio
// holds while it is busy. Each result is the fastest of rounds rounds.
func MeasurePair(w Workload, objectsPerIter int, base Workload, minTime time.Duration, rounds int) (m, b Measurement) {
	return MeasurePairN(w, objectsPerIter, base, 1, minTime, rounds)
}

// MeasurePairN is MeasurePair with baseObjectsPerIter objects per
// iteration of base.
func MeasurePairN(w Workload, objectsPerIter int, base Workload, baseObjectsPerIter int, minTime time.Duration, rounds int) (m, b Measurement) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	iters := calibrate(w, minTime)
	biters := 0
	if base != nil {
		biters = calibrate(base, minTime)
	}
	best, bbest := time.Duration(1<<63-1), time.Duration(1<<63-1)
	for range rounds {
		if base != nil {
			start := cputime.Thread()
			base(biters)
			bbest = min(bbest, cputime.Thread()-start)
		}
		start := cputime.Thread()
		w(iters)
		best = min(best, cputime.Thread()-start)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	w(iters)
	runtime.ReadMemStats(&after)
	objects := float64(iters * objectsPerIter)
	m = Measurement{
		NsPerObject:     float64(best.Nanoseconds()) / objects,
		AllocsPerObject: float64(after.Mallocs-before.Mallocs) / objects,
	}
	if base != nil {
		b = Measurement{NsPerObject: float64(bbest.Nanoseconds()) / float64(biters*baseObjectsPerIter)}
	}
	return m, b
}

// calibrate warms w up and returns how many iterations take about minTime
// of thread CPU time. The caller holds runtime.LockOSThread.
func calibrate(w Workload, minTime time.Duration) int {
	w(1)
	iters := 1
	for {
		start := cputime.Thread()
		w(iters)
		if d := cputime.Thread() - start; d >= minTime/4 || iters >= 1<<30 {
			return max(1, int(float64(iters)*float64(minTime)/float64(max(d, time.Microsecond))))
		}
		iters *= 4
	}
}

// StdlibGCM returns a workload sealing (or opening) with crypto/cipher's
// AES-GCM at the key size of suite's AES, the baseline of every ratio.
func StdlibGCM(suite sframe.CipherSuite, op string, size int) (Workload, error) {
	block, err := aes.NewCipher(make([]byte, aesKeyLen(suite)))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 12)
	pt := make([]byte, size)
	buf := make([]byte, 0, size+16)
	if op == "seal" {
		return func(iters int) {
			for range iters {
				aead.Seal(buf[:0], nonce, pt, nil)
			}
		}, nil
	}
	ct := aead.Seal(nil, nonce, pt, nil)
	return func(iters int) {
		for range iters {
			if _, err := aead.Open(buf[:0], nonce, ct, nil); err != nil {
				panic(err)
			}
		}
	}, nil
}

// metadata is a typical MoQ identity: namespace, track, group and object.
var metadata = []byte("\x02\x0bexample.org\x05room1\x05video\x81\x00\x2a")

// SFrameSeal returns a workload sealing size-byte objects with one Sender.
func SFrameSeal(suite sframe.CipherSuite, size int) (Workload, error) {
	s, err := sframe.NewSender(suite, 0x123, make([]byte, suite.KeySize()))
	if err != nil {
		return nil, err
	}
	pt := make([]byte, size)
	buf := make([]byte, 0, size+s.Overhead())
	return func(iters int) {
		for range iters {
			if _, err := s.Seal(buf[:0], metadata, pt); err != nil {
				panic(err)
			}
		}
	}, nil
}

// openPair returns a Sender and a Receiver holding the same key, with
// replay protection off so the same ciphertexts can be opened again.
func openPair(suite sframe.CipherSuite) (*sframe.Sender, *sframe.Receiver, error) {
	base := make([]byte, suite.KeySize())
	s, err := sframe.NewSender(suite, 0x123, base)
	if err != nil {
		return nil, nil, err
	}
	r := sframe.NewReceiver(sframe.WithReplayWindow(0))
	if err := r.AddKey(suite, 0x123, base); err != nil {
		return nil, nil, err
	}
	return s, r, nil
}

// SFrameOpen returns a workload opening size-byte objects with a Receiver.
// Replay protection is off so the same ciphertexts can be opened again.
func SFrameOpen(suite sframe.CipherSuite, size int) (Workload, error) {
	s, r, err := openPair(suite)
	if err != nil {
		return nil, err
	}
	ct, err := s.Seal(nil, metadata, make([]byte, size))
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 0, size)
	return func(iters int) {
		for range iters {
			if _, err := r.Open(buf[:0], metadata, ct); err != nil {
				panic(err)
			}
		}
	}, nil
}

// Options selects what Run measures.
type Options struct {
	Suites  []sframe.CipherSuite
	Ops     []string
	Sizes   []int
	Batches []int         // batch sizes for the AES-GCM suites; 1 = Sender.Seal, Receiver.Open
	Paths   []string      // AES-GCM implementations (aesgcm.Implementations())
	MinTime time.Duration // per round
	Rounds  int
	// Pipeline adds rows for a sealing stage with 1 and 2 workers.
	Pipeline bool
}

// DefaultOptions measures every RFC 9605 suite, both ways, at the object
// sizes of real media: audio (64, 160 B), a video packet (1200 B) and a
// video frame (16 KiB); batches of 1, 8 and 32; every AES-GCM path.
func DefaultOptions() Options {
	return Options{
		Suites: []sframe.CipherSuite{
			sframe.AES128CTRHMACSHA256_80, sframe.AES128CTRHMACSHA256_64, sframe.AES128CTRHMACSHA256_32,
			sframe.AES128GCMSHA256_128, sframe.AES256GCMSHA512_128,
		},
		Ops:      []string{"seal", "open"},
		Sizes:    []int{64, 160, 1200, 16384},
		Batches:  []int{1, 8, 32},
		Paths:    aesgcm.Implementations(),
		MinTime:  25 * time.Millisecond,
		Rounds:   3,
		Pipeline: true,
	}
}

func isGCM(s sframe.CipherSuite) bool {
	return s == sframe.AES128GCMSHA256_128 || s == sframe.AES256GCMSHA512_128
}

// Run measures every combination in opts and calls emit with each result.
// Each row's stdlib_gbps is crypto/cipher AES-GCM at the same key size, op
// and object size, measured in rounds alternating with the row's own (thread
// CPU time); ratio = SFrame speed / stdlib speed. The pipeline and parallel
// rows are wall time, against a stdlib baseline measured once.
func Run(opts Options, emit func(Result)) error {
	type baseKey struct {
		aes  int
		op   string
		size int
	}
	baselines := map[baseKey]Measurement{}
	baseline := func(suite sframe.CipherSuite, op string, size int) (Measurement, error) {
		bk := baseKey{aesKeyLen(suite), op, size}
		if m, ok := baselines[bk]; ok {
			return m, nil
		}
		w, err := StdlibGCM(suite, op, size)
		if err != nil {
			return Measurement{}, err
		}
		m := MeasureCPU(w, 1, opts.MinTime, opts.Rounds)
		baselines[bk] = m
		return m, nil
	}
	// pairRow emits the row of w timed against the baseline bw: the two
	// run interleaved, so the ratio compares them in the same moments of a
	// shared machine. bw's speed goes in StdlibGBps and Ratio.
	pairRow := func(suite sframe.CipherSuite, op string, size, batch int, path string, w Workload, perIter int, bw Workload, bwPerIter int) {
		m, base := MeasurePairN(w, perIter, bw, bwPerIter, opts.MinTime, opts.Rounds)
		emit(Result{
			Suite: suite.String(), Op: op, Size: size, Batch: batch, Path: path,
			NsPerObject: m.NsPerObject, GBps: m.GBps(size),
			StdlibGBps: base.GBps(size), Ratio: base.NsPerObject / m.NsPerObject,
			AllocsPerObject: m.AllocsPerObject,
		})
	}
	// row emits the row of w against Go's AES-GCM of the same size.
	row := func(suite sframe.CipherSuite, op string, size, batch int, path string, w Workload, perIter int) error {
		baseOp := op
		if op != "open" {
			baseOp = "seal"
		}
		bw, err := StdlibGCM(suite, baseOp, size)
		if err != nil {
			return err
		}
		pairRow(suite, op, size, batch, path, w, perIter, bw, 1)
		return nil
	}
	paths := opts.Paths
	if len(paths) == 0 {
		paths = []string{aesgcm.Implementation()}
	}
	for _, path := range paths {
		// Force this path through the internal test hook (the table
		// measures every path, not just the one aesgcm would pick).
		if !impl.Select("aesgcm", path) {
			return fmt.Errorf("bench: AES-GCM implementation %q not available", path)
		}
		restore := func() { impl.Reset("aesgcm") }
		var err error
		for _, suite := range opts.Suites {
			if !isGCM(suite) && path != paths[0] {
				continue // CTR+HMAC suites do not use the AES-GCM paths
			}
			p := path
			if !isGCM(suite) {
				p = "ctr-hmac"
			}
			for _, op := range opts.Ops {
				for _, size := range opts.Sizes {
					batches := []int{1}
					if isGCM(suite) && len(opts.Batches) > 0 {
						batches = opts.Batches
					}
					for _, batch := range batches {
						var w Workload
						switch {
						case op == "seal" && batch == 1:
							w, err = SFrameSeal(suite, size)
						case op == "seal":
							w, err = SFrameSealBatch(suite, size, batch)
						case op == "open" && batch == 1:
							w, err = SFrameOpen(suite, size)
						case op == "open":
							w, err = SFrameOpenBatch(suite, size, batch)
						default:
							err = fmt.Errorf("bench: unknown op %q", op)
						}
						if err != nil {
							restore()
							return err
						}
						if err := row(suite, op, size, batch, p, w, batch); err != nil {
							restore()
							return err
						}
					}
				}
			}
			if suite == sframe.AES128CTRHMACSHA256_80 && slices.Contains(opts.Ops, "seal") {
				// The CTR+HMAC suites' own baselines: the same
				// construction composed from crypto/aes (cipher.NewCTR)
				// and crypto/hmac, and SHA-256 alone over the object.
				for _, size := range opts.Sizes {
					for _, b := range []struct {
						op string
						mk func(int) (Workload, error)
					}{{"ctr-hmac-stdlib", StdlibCTRHMAC}, {"sha256", StdlibSHA256}} {
						w, err := b.mk(size)
						if err != nil {
							restore()
							return err
						}
						if err := row(suite, b.op, size, 1, "stdlib", w, 1); err != nil {
							restore()
							return err
						}
						// SFrame's seal against this baseline directly,
						// alternating in the same rounds (the goals' figure).
						sw, err := SFrameSeal(suite, size)
						if err != nil {
							restore()
							return err
						}
						pairRow(suite, "seal-vs-"+b.op, size, 1, p, sw, 1, w, 1)
					}
				}
			}
			if isGCM(suite) && slices.Contains(opts.Ops, "seal") && slices.Contains(opts.Sizes, 1200) {
				// The raw AEAD with SFrame's AAD, alone and batched, to
				// show SFrame's own cost.
				for _, batch := range []int{1, 32} {
					w, err := RawAEADSeal(suite, 1200, batch)
					if err != nil {
						restore()
						return err
					}
					if err := row(suite, "aead-seal", 1200, batch, path, w, batch); err != nil {
						restore()
						return err
					}
					// SFrame against the raw AEAD directly, alternating in
					// the same rounds: a ratio of the two rows' stdlib
					// ratios would carry two baselines' drift.
					sw, err := SFrameSealBatch(suite, 1200, batch)
					if batch == 1 {
						sw, err = SFrameSeal(suite, 1200)
					}
					if err != nil {
						restore()
						return err
					}
					pairRow(suite, "sframe-vs-aead", 1200, batch, path, sw, batch, w, batch)
				}
			}
		}
		restore()
	}
	if opts.Pipeline {
		// Scaling rows: 1200 B objects of suite 4 on 1 and 2 goroutines,
		// with and without a pipeline stage between producer and sealers.
		suite := sframe.AES128GCMSHA256_128
		base, err := baseline(suite, "seal", 1200)
		if err != nil {
			return err
		}
		scaling := func(op string, batch, workers int, w Workload) {
			m := Measure(w, 1, 8*opts.MinTime, opts.Rounds)
			emit(Result{Suite: suite.String(), Op: op, Size: 1200, Batch: batch,
				Path: aesgcm.Implementation(), NsPerObject: m.NsPerObject, GBps: m.GBps(1200),
				StdlibGBps: base.GBps(1200), Ratio: base.NsPerObject / m.NsPerObject,
				AllocsPerObject: m.AllocsPerObject, Workers: workers})
		}
		for _, g := range []int{1, 2} {
			w, err := ParallelSeal(suite, g, 1200)
			if err != nil {
				return err
			}
			scaling("parallel-seal", 1, g, w)
		}
		for _, workers := range []int{1, 2} {
			w, stop, err := PipelineSeal(suite, workers, 30, 1200)
			if err != nil {
				return err
			}
			scaling("pipeline-seal", 32, workers, w)
			stop()
		}
	}
	return nil
}

func aesKeyLen(s sframe.CipherSuite) int {
	if slices.Contains([]sframe.CipherSuite{sframe.AES256GCMSHA512_128,
		sframe.AES256CTRHMACSHA512_80, sframe.AES256CTRHMACSHA512_64, sframe.AES256CTRHMACSHA512_32}, s) {
		return 32
	}
	return 16
}

// SFrameSealBatch returns a workload sealing batches of objects with one
// Sender's SealBatch (the multi-buffer path); each iteration is one batch.
func SFrameSealBatch(suite sframe.CipherSuite, size, batch int) (Workload, error) {
	s, err := sframe.NewSender(suite, 0x123, make([]byte, suite.KeySize()))
	if err != nil {
		return nil, err
	}
	items := make([]sframe.SealItem, batch)
	pt := make([]byte, size)
	for i := range items {
		items[i] = sframe.SealItem{Metadata: metadata, Plaintext: pt, Out: make([]byte, 0, size+s.Overhead())}
	}
	return func(iters int) {
		for range iters {
			if s.SealBatch(items) != 0 {
				panic(items[0].Err)
			}
		}
	}, nil
}

// RawAEADSeal seals with the bare AES-GCM of the current path (no SFrame
// header, counter or key lookup) with an AAD as long as SFrame's header
// plus metadata: the floor SFrame's own overhead is measured against. With
// batch > 1 it uses the same multi-buffer call as Sender.SealBatch.
func RawAEADSeal(suite sframe.CipherSuite, size, batch int) (Workload, error) {
	aead, err := aesgcm.New(make([]byte, aesKeyLen(suite)))
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 12)
	aad := make([]byte, sframe.HeaderLen(0x123, 1<<20)+len(metadata))
	pt := make([]byte, size)
	if batch == 1 {
		buf := make([]byte, 0, size+16)
		return func(iters int) {
			for range iters {
				aead.Seal(buf[:0], nonce, pt, aad)
			}
		}, nil
	}
	msgs := make([]aesgcm.Message, batch)
	for i := range msgs {
		msgs[i] = aesgcm.Message{Nonce: nonce, AAD: aad, In: pt, Out: make([]byte, size+16)}
	}
	return func(iters int) {
		for range iters {
			aead.SealBatch(msgs)
		}
	}, nil
}

// SFrameOpenBatch returns a workload opening batches of size-byte objects
// with one Receiver's OpenBatch (the multi-buffer path); each iteration is
// one batch. Replay protection is off so the same ciphertexts open again.
func SFrameOpenBatch(suite sframe.CipherSuite, size, batch int) (Workload, error) {
	s, r, err := openPair(suite)
	if err != nil {
		return nil, err
	}
	items := make([]sframe.OpenItem, batch)
	for i := range items {
		ct, err := s.Seal(nil, metadata, make([]byte, size))
		if err != nil {
			return nil, err
		}
		items[i] = sframe.OpenItem{Metadata: metadata, Ciphertext: ct, Out: make([]byte, 0, size)}
	}
	return func(iters int) {
		for range iters {
			if r.OpenBatch(items) != 0 {
				panic(items[0].Err)
			}
		}
	}, nil
}

// StdlibCTRHMAC returns a workload sealing size-byte objects with the
// AES-128-CTR + HMAC-SHA256 construction of RFC 9605 §4.5.1 (suite 1: 80-bit
// tag, same AAD length as SFrame's header and metadata) composed from the
// standard library as one would write it: cipher.NewCTR per object (its IV
// is per object) and one crypto/hmac reset per object. The baseline of the
// CTR+HMAC suites.
func StdlibCTRHMAC(size int) (Workload, error) {
	block, err := aes.NewCipher(make([]byte, 16))
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, make([]byte, 32))
	var iv [16]byte
	var lengths [24]byte
	aad := make([]byte, sframe.HeaderLen(0x123, 1<<20)+len(metadata))
	pt := make([]byte, size)
	out := make([]byte, size+10)
	sum := make([]byte, 0, sha256.Size)
	return func(iters int) {
		for range iters {
			ct := out[:size]
			cipher.NewCTR(block, iv[:]).XORKeyStream(ct, pt)
			binary.BigEndian.PutUint64(lengths[0:], uint64(len(aad)))
			binary.BigEndian.PutUint64(lengths[8:], uint64(size))
			binary.BigEndian.PutUint64(lengths[16:], 10)
			mac.Reset()
			mac.Write(lengths[:])
			mac.Write(iv[:12])
			mac.Write(aad)
			mac.Write(ct)
			copy(out[size:], mac.Sum(sum[:0]))
		}
	}, nil
}

// StdlibSHA256 returns a workload hashing size-byte objects with Go's
// crypto/sha256 (SHA-NI where the CPU has it): the speed the CTR+HMAC
// suites' tags are bounded by.
func StdlibSHA256(size int) (Workload, error) {
	pt := make([]byte, size)
	return func(iters int) {
		for range iters {
			sha256.Sum256(pt)
		}
	}, nil
}
