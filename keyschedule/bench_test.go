package keyschedule

import (
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/internal/race"
	"github.com/moqsframe/moqsframe/sframe"
)

// benchPair returns a sender (index 0) and receiver (index 1) sharing
// epoch 1 of a 64-member group, and a ciphertext from the sender.
func benchPair(tb testing.TB, opts ...Option) (a, b *Schedule, ct []byte) {
	g := newGroup(64)
	a, b = mustNew(tb, opts...), mustNew(tb, opts...)
	mustInstall(tb, a, g.epoch(1, 0))
	mustInstall(tb, b, g.epoch(1, 1))
	ct, err := a.Seal(nil, nil, make([]byte, 1000))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := b.Open(nil, nil, ct); err != nil { // resolve the key once
		tb.Fatal(err)
	}
	return a, b, ct
}

// BenchmarkSealLookup is the encrypt-path key lookup alone: snapshot load,
// cached-key check and usage reservation, without the AEAD.
func BenchmarkSealLookup(b *testing.B) {
	a, _, _ := benchPair(b)
	st := a.def
	b.ReportAllocs()
	cpuLoop(b, func() {
		if _, err := st.acquire(64); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkOpenLookup is this package's decrypt-path lookup: header parse,
// snapshot load, epoch slot.
func BenchmarkOpenLookup(b *testing.B) {
	_, r, ct := benchPair(b)
	b.ReportAllocs()
	cpuLoop(b, func() {
		if _, err := r.receiverFor(ct); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkOpenLookupWithKID adds the epoch receiver's KID map lookup
// (through HasKey, the same map read sframe's Open does): the whole key
// lookup of the decrypt path, without the AEAD and replay check.
func BenchmarkOpenLookupWithKID(b *testing.B) {
	_, r, ct := benchPair(b)
	h, _, _ := sframe.ParseHeader(ct)
	b.ReportAllocs()
	cpuLoop(b, func() {
		rx, err := r.receiverFor(ct)
		if err != nil || !rx.HasKey(h.KID) {
			b.Fatal("lookup failed")
		}
	})
}

// BenchmarkSealLookupParallel shows the cost under contention: all
// goroutines share one stream, hence one key's counters.
func BenchmarkSealLookupParallel(b *testing.B) {
	a, _, _ := benchPair(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.def.acquire(64); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSeal and BenchmarkOpen are the full paths with a 1000-byte
// object, against sframe.Sender/Receiver directly for the difference.
func BenchmarkSeal(b *testing.B) {
	a, _, _ := benchPair(b)
	pt := make([]byte, 1000)
	dst := make([]byte, 0, 2048)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	cpuLoop(b, func() {
		if _, err := a.Seal(dst, []byte("md"), pt); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkSealSframeDirect(b *testing.B) {
	s, err := sframe.NewSender(testSuite, 0x10, make([]byte, 16))
	if err != nil {
		b.Fatal(err)
	}
	pt := make([]byte, 1000)
	dst := make([]byte, 0, 2048)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	cpuLoop(b, func() {
		if _, err := s.Seal(dst, []byte("md"), pt); err != nil {
			b.Fatal(err)
		}
	})
}

// openBench seals n distinct objects up front (the replay window rejects
// repeats) and opens them in turn.
func openBench(b *testing.B, seal func([]byte) []byte, open func(dst, ct []byte) error) {
	pt := make([]byte, 1000)
	const n = 1 << 14
	cts := make([][]byte, n)
	for i := range cts {
		cts[i] = seal(pt)
	}
	dst := make([]byte, 0, 2048)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	i := 0
	cpuLoop(b, func() {
		if i == n { // fresh ciphertexts, outside the measurement
			b.StopTimer()
			excludeCPU(func() {
				for j := range cts {
					cts[j] = seal(pt)
				}
			})
			i = 0
			b.StartTimer()
		}
		if err := open(dst, cts[i]); err != nil {
			b.Fatal(err)
		}
		i++
	})
}

func BenchmarkOpen(b *testing.B) {
	a, r, _ := benchPair(b, WithReplayWindow(1<<15))
	openBench(b, func(pt []byte) []byte { ct, _ := a.Seal(nil, []byte("md"), pt); return ct },
		func(dst, ct []byte) error { _, err := r.Open(dst, []byte("md"), ct); return err })
}

func BenchmarkOpenSframeDirect(b *testing.B) {
	s, _ := sframe.NewSender(testSuite, 0x11, make([]byte, 16))
	r := sframe.NewReceiver(sframe.WithReplayWindow(1 << 15))
	if err := r.AddKey(testSuite, 0x11, make([]byte, 16)); err != nil {
		b.Fatal(err)
	}
	openBench(b, func(pt []byte) []byte { ct, _ := s.Seal(nil, []byte("md"), pt); return ct },
		func(dst, ct []byte) error { _, err := r.Open(dst, []byte("md"), ct); return err })
}

// BenchmarkInstall is the cost of installing one epoch (E=4, steady state
// with retirement running), excluding any key derivation, which happens on
// first use.
func BenchmarkInstall(b *testing.B) {
	g := newGroup(64)
	clk := newFakeClock()
	s := mustNew(b, WithClock(clk.Now), WithGracePeriod(3*time.Second))
	ep := g.epoch(1, 0)
	b.ReportAllocs()
	n := uint64(0)
	cpuLoop(b, func() {
		n++
		ep.Number = n
		clk.Advance(time.Second)
		if err := s.Install(ep); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkFirstUse is installing an epoch plus the first seal and the first
// open of one peer's key in it: the on-demand key derivations.
func BenchmarkFirstUse(b *testing.B) {
	g := newGroup(64)
	a, r := mustNew(b), mustNew(b)
	b.ReportAllocs()
	n := uint64(0)
	for b.Loop() {
		n++
		ea, er := g.epoch(1, 0), g.epoch(1, 1)
		ea.Number, er.Number = n, n
		if err := a.Install(ea); err != nil {
			b.Fatal(err)
		}
		if err := r.Install(er); err != nil {
			b.Fatal(err)
		}
		ct, err := a.Seal(nil, nil, []byte("x"))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Open(nil, nil, ct); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSteadyStateAllocs: Seal and Open allocate nothing once keys exist and
// dst has room, and neither do the lookups.
func TestSteadyStateAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	a, r, ct := benchPair(t, WithReplayWindow(1<<12))
	pt := make([]byte, 1000)
	dst := make([]byte, 0, 2048)
	st, _ := a.Stream(7)
	st.Seal(dst, nil, pt) // derive its key
	check := func(name string, f func()) {
		if n := testing.AllocsPerRun(500, f); n != 0 {
			t.Errorf("%s: %v allocs per run", name, n)
		}
	}
	check("Schedule.Seal", func() {
		if _, err := a.Seal(dst, []byte("md"), pt); err != nil {
			t.Fatal(err)
		}
	})
	check("Stream.Seal", func() {
		if _, err := st.Seal(dst, []byte("md"), pt); err != nil {
			t.Fatal(err)
		}
	})
	cts := make([][]byte, 600)
	for i := range cts {
		cts[i], _ = a.Seal(nil, []byte("md"), pt)
	}
	i := 0
	check("Open", func() {
		if _, err := r.Open(dst, []byte("md"), cts[i]); err != nil {
			t.Fatal(err)
		}
		i++
	})
	check("seal lookup", func() { a.def.acquire(64) })
	check("open lookup", func() { r.receiverFor(ct) })
	// A refusal by this layer allocates nothing either.
	junk := append(sframe.AppendHeader(nil, 0x1f, 0), make([]byte, 20)...)
	check("open unknown epoch", func() { r.Open(dst, nil, junk) })
}
