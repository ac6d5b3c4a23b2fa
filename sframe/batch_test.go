package sframe

import (
	"bytes"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/moqsframe/moqsframe/asm/aesgcm"
	"github.com/moqsframe/moqsframe/internal/impl"
	"github.com/moqsframe/moqsframe/internal/race"
)

// SealBatch must produce exactly what one Seal per item would, with
// consecutive counters, on every AES-GCM implementation and for the
// suites without a batch kernel.
func TestSealBatchMatchesSeal(t *testing.T) {
	t.Cleanup(func() { impl.Reset("aesgcm") }) // also after a Fatal
	for _, name := range aesgcm.Implementations() {
		if !impl.Select("aesgcm", name) {
			t.Fatalf("implementation %q not available", name)
		}
		for _, suite := range allSuites {
			base := randBytes(suite.KeySize())
			batched, _ := NewSender(suite, 42, base, WithCounter(250))
			single, _ := NewSender(suite, 42, base, WithCounter(250))
			r := NewReceiver()
			r.AddKey(suite, 42, base)
			var items []SealItem
			for i := range 33 {
				items = append(items, SealItem{Metadata: randBytes(i * 7 % 41), Plaintext: randBytes(i * 37)}) // metadata of 0 to 40 bytes
			}
			if failed := batched.SealBatch(items); failed != 0 {
				t.Fatalf("%s %v: %d failed", name, suite, failed)
			}
			for i, it := range items {
				want, _ := single.Seal(nil, it.Metadata, it.Plaintext)
				if !bytes.Equal(it.Out, want) {
					t.Fatalf("%s %v item %d differs from Seal", name, suite, i)
				}
				if pt, err := r.Open(nil, it.Metadata, it.Out); err != nil || !bytes.Equal(pt, it.Plaintext) {
					t.Fatalf("%s %v item %d: open %v", name, suite, i, err)
				}
			}
			if batched.Counter() != 250+33 {
				t.Fatalf("counter %d", batched.Counter())
			}
		}
	}
}

func TestSealBatchCounterLimit(t *testing.T) {
	s, _ := NewSender(AES128GCMSHA256_128, 1, randBytes(16), WithCounterLimit(5))
	items := make([]SealItem, 8)
	if failed := s.SealBatch(items); failed != 3 {
		t.Fatalf("%d failed, want 3", failed)
	}
	for i, it := range items {
		if (i >= 5) != errors.Is(it.Err, ErrCounterExhausted) {
			t.Fatalf("item %d: %v", i, it.Err)
		}
	}
	if failed := s.SealBatch(items[:1]); failed != 1 {
		t.Fatal("sealed past the limit")
	}
}

func TestSealBatchZeroAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	s, _ := NewSender(AES128GCMSHA256_128, 0x123, randBytes(16))
	items := make([]SealItem, 32)
	for i := range items {
		items[i] = SealItem{Metadata: randBytes(30), Plaintext: randBytes(160), Out: make([]byte, 0, 200)}
	}
	s.SealBatch(items)
	if a := testing.AllocsPerRun(100, func() { s.SealBatch(items) }); a != 0 {
		t.Fatalf("%v allocs per batch", a)
	}
}

// openTwins returns two receivers holding the same keys: one opens items
// one by one with Open, the other in a batch, and both must agree.
func openTwins(t testing.TB, suites []CipherSuite) (single, batched *Receiver, senders []*Sender) {
	single, batched = NewReceiver(), NewReceiver()
	for i, suite := range suites {
		base := bytes.Repeat([]byte{byte(i + 1)}, suite.KeySize())
		s, err := NewSender(suite, uint64(i), base, WithCounter(uint64(i*100)))
		if err != nil {
			t.Fatal(err)
		}
		senders = append(senders, s)
		single.AddKey(suite, uint64(i), base)
		batched.AddKey(suite, uint64(i), base)
	}
	return single, batched, senders
}

// checkOpenBatch opens cts (with their metadata) through OpenBatch on one
// twin and Open on the other, and fails on any difference in output,
// error or counters. inPlace opens each item into its own ciphertext.
func checkOpenBatch(t *testing.T, single, batched *Receiver, mds, cts [][]byte, inPlace bool) {
	t.Helper()
	items := make([]OpenItem, len(cts))
	for i := range cts {
		items[i] = OpenItem{Metadata: mds[i], Ciphertext: bytes.Clone(cts[i])}
		if inPlace {
			items[i].Out = items[i].Ciphertext[:0]
		}
	}
	failed := batched.OpenBatch(items)
	wantFailed := 0
	for i := range cts {
		want, werr := single.Open(nil, mds[i], bytes.Clone(cts[i]))
		it := items[i]
		if (werr == nil) != (it.Err == nil) || werr != nil && werr.Error() != it.Err.Error() {
			t.Fatalf("item %d: OpenBatch error %v, Open error %v", i, it.Err, werr)
		}
		if werr != nil {
			wantFailed++
			if len(it.Out) != 0 {
				t.Fatalf("item %d failed with %d bytes of output", i, len(it.Out))
			}
			continue
		}
		if !bytes.Equal(it.Out, want) {
			t.Fatalf("item %d: OpenBatch output differs from Open", i)
		}
	}
	if failed != wantFailed {
		t.Fatalf("OpenBatch reports %d failed, Open failed %d", failed, wantFailed)
	}
	if a, b := batched.Stats(), single.Stats(); a != b {
		t.Fatalf("stats differ: batch %+v, single %+v", a, b)
	}
}

// OpenBatch agrees with Open item by item, on every AES-GCM implementation:
// good objects of several keys and suites interleaved, tampered ones
// (failing alone), replays inside the batch, unknown KIDs, malformed and
// truncated ciphertexts, in place and not.
func TestOpenBatchMatchesOpen(t *testing.T) {
	t.Cleanup(func() { impl.Reset("aesgcm") })
	rng := mrand.New(mrand.NewPCG(3, 4))
	for _, name := range aesgcm.Implementations() {
		if !impl.Select("aesgcm", name) {
			t.Fatalf("implementation %q not available", name)
		}
		for _, inPlace := range []bool{false, true} {
			single, batched, senders := openTwins(t, allSuites)
			var mds, cts [][]byte
			for i := range 200 {
				// Mostly runs of one key, so the batch path gets runs.
				s := senders[3+(i/20)%2]
				if i%7 == 0 {
					s = senders[rng.IntN(len(senders))]
				}
				md := []byte(fmt.Sprint("md", i))
				ct, err := s.Seal(nil, md, randBytes(rng.IntN(1300)))
				if err != nil {
					t.Fatal(err)
				}
				switch i % 23 {
				case 5: // tampered body or tag
					ct[len(ct)-1-rng.IntN(min(len(ct)-2, 40))] ^= 1
				case 9: // wrong metadata
					md = append(md, 'x')
				case 11: // replay of the previous object
					if len(cts) > 0 {
						ct, md = bytes.Clone(cts[len(cts)-1]), mds[len(mds)-1]
					}
				case 13: // unknown KID
					ct = AppendHeader(nil, 999, 1)
					ct = append(ct, make([]byte, 20)...)
				case 17: // truncated below the tag
					ct = ct[:HeaderLen(s.KID(), s.Counter()-1)+3]
				case 19: // malformed header
					ct = []byte{0xff}
				}
				mds, cts = append(mds, md), append(cts, ct)
			}
			checkOpenBatch(t, single, batched, mds, cts, inPlace)
		}
	}
}

func TestOpenBatchZeroAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	s, _ := NewSender(AES128GCMSHA256_128, 0x123, bytes.Repeat([]byte{1}, 16))
	r := NewReceiver(WithReplayWindow(0))
	r.AddKey(AES128GCMSHA256_128, 0x123, bytes.Repeat([]byte{1}, 16))
	items := make([]OpenItem, 32)
	for i := range items {
		md := randBytes(30)
		ct, _ := s.Seal(nil, md, randBytes(160))
		items[i] = OpenItem{Metadata: md, Ciphertext: ct, Out: make([]byte, 0, 200)}
	}
	if failed := r.OpenBatch(items); failed != 0 {
		t.Fatalf("%d failed: %v", failed, items[0].Err)
	}
	if a := testing.AllocsPerRun(100, func() { r.OpenBatch(items) }); a != 0 {
		t.Fatalf("%v allocs per batch", a)
	}
}

// FuzzOpenBatch cuts the input into ciphertexts (seeds are real objects)
// and checks that OpenBatch agrees with Open on each.
func FuzzOpenBatch(f *testing.F) {
	_, _, senders := openTwins(f, allSuites)
	var seed []byte
	for i, s := range senders {
		ct, _ := s.Seal(nil, []byte("md"), []byte(fmt.Sprint("seed frame ", i)))
		seed = append(append(seed, byte(len(ct))), ct...)
	}
	f.Add(seed)
	f.Add([]byte{3, 0xff, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		single, batched, _ := openTwins(t, allSuites)
		var mds, cts [][]byte
		for len(in) > 0 {
			n := min(int(in[0]), len(in)-1)
			cts, mds = append(cts, in[1:1+n]), append(mds, []byte("md"))
			in = in[1+n:]
		}
		checkOpenBatch(t, single, batched, mds, cts, len(cts)%2 == 0)
	})
}

// SealBatch writes the same headers as Seal for KIDs and counters of every
// encoded length, across the counter values where the CTR grows a byte.
func TestSealBatchHeaderEdges(t *testing.T) {
	base := randBytes(16)
	for _, kid := range []uint64{0, 7, 8, 255, 256, 1 << 40, 1<<64 - 1} {
		for _, first := range []uint64{0, 3, 250, 65530, 1<<56 - 3, MaxCounter - 20} {
			batched, _ := NewSender(AES128GCMSHA256_128, kid, base, WithCounter(first))
			single, _ := NewSender(AES128GCMSHA256_128, kid, base, WithCounter(first))
			items := make([]SealItem, 12)
			for i := range items {
				items[i] = SealItem{Metadata: randBytes(i % 3), Plaintext: randBytes(i)}
			}
			batched.SealBatch(items)
			for i, it := range items {
				want, err := single.Seal(nil, it.Metadata, it.Plaintext)
				if err != nil || it.Err != nil {
					t.Fatalf("kid %d ctr %d: %v %v", kid, first+uint64(i), err, it.Err)
				}
				if !bytes.Equal(it.Out, want) {
					t.Fatalf("kid %d ctr %d: batch %x, Seal %x", kid, first+uint64(i), it.Out, want)
				}
			}
		}
	}
}

// Concurrent SealBatch callers on one Sender get disjoint counters, and
// concurrent OpenBatch callers on one Receiver, given the same ciphertexts,
// open each exactly once between them (the other gets ErrReplay), with the
// counters in Stats adding up.
func TestConcurrentBatches(t *testing.T) {
	base := randBytes(16)
	s, _ := NewSender(AES128GCMSHA256_128, 9, base)
	r := NewReceiver(WithReplayWindow(4096))
	r.AddKey(AES128GCMSHA256_128, 9, base)
	const workers, batches, size = 4, 20, 16
	cts := make([][][]byte, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range batches {
				items := make([]SealItem, size)
				for i := range items {
					items[i] = SealItem{Metadata: []byte("md"), Plaintext: []byte{byte(w), byte(i)}}
				}
				if failed := s.SealBatch(items); failed != 0 {
					t.Error(items[0].Err)
					return
				}
				for i := range items {
					cts[w] = append(cts[w], items[i].Out)
				}
			}
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	var all []OpenItem
	for _, list := range cts {
		for _, ct := range list {
			h, _, _ := ParseHeader(ct)
			if seen[h.CTR] {
				t.Fatalf("counter %d used twice", h.CTR)
			}
			seen[h.CTR] = true
			all = append(all, OpenItem{Metadata: []byte("md"), Ciphertext: ct})
		}
	}
	if len(seen) != workers*batches*size {
		t.Fatalf("%d distinct counters, want %d", len(seen), workers*batches*size)
	}
	// Two openers each open every ciphertext, in batches of 16.
	var opened, replayed [2]int
	for o := range 2 {
		wg.Go(func() {
			items := slices.Clone(all)
			for start := 0; start < len(items); start += 16 {
				batch := items[start:min(start+16, len(items))]
				r.OpenBatch(batch)
				for _, it := range batch {
					switch {
					case it.Err == nil:
						opened[o]++
					case errors.Is(it.Err, ErrReplay):
						replayed[o]++
					default:
						t.Error(it.Err)
					}
				}
			}
		})
	}
	wg.Wait()
	n := len(all)
	if opened[0]+opened[1] != n || replayed[0]+replayed[1] != n {
		t.Fatalf("opened %v replayed %v of %d ciphertexts", opened, replayed, n)
	}
	if st := r.Stats(); st.Opened != uint64(n) || st.Replayed != uint64(n) {
		t.Fatalf("stats %+v, want %d opened and %d replayed", st, n, n)
	}
}
