package sframe

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/moqsframe/moqsframe/internal/race"
)

var allSuites = []CipherSuite{
	AES128CTRHMACSHA256_80, AES128CTRHMACSHA256_64, AES128CTRHMACSHA256_32,
	AES128GCMSHA256_128, AES256GCMSHA512_128,
	AES256CTRHMACSHA512_80, AES256CTRHMACSHA512_64, AES256CTRHMACSHA512_32,
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func pair(t testing.TB, suite CipherSuite, kid uint64, opts ...SenderOption) (*Sender, *Receiver) {
	t.Helper()
	base := randBytes(suite.KeySize())
	s, err := NewSender(suite, kid, base, opts...)
	if err != nil {
		t.Fatal(err)
	}
	r := NewReceiver()
	if err := r.AddKey(suite, kid, base); err != nil {
		t.Fatal(err)
	}
	return s, r
}

func TestRoundTripSizes(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	sizes := []int{0, 1, 15, 16, 17, 63, 64, 65, 160, 255, 256, 1200, 4095, 4096, 16384, 65535, 65536}
	for range 20 {
		sizes = append(sizes, rng.IntN(65537))
	}
	for _, suite := range allSuites {
		s, r := pair(t, suite, 0x123)
		for _, n := range sizes {
			pt := randBytes(n)
			md := randBytes(rng.IntN(64))
			ct, err := s.Seal(nil, md, pt)
			if err != nil {
				t.Fatal(err)
			}
			if want := n + s.Suite().Overhead(s.KID(), s.Counter()-1); len(ct) != want {
				t.Fatalf("%v n=%d: len %d, want %d", suite, n, len(ct), want)
			}
			got, err := r.Open(nil, md, ct)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("%v n=%d: open err=%v equal=%v", suite, n, err, bytes.Equal(got, pt))
			}
		}
	}
}

func TestRoundTripEdgeKIDsAndCounters(t *testing.T) {
	for _, suite := range allSuites {
		for _, kid := range edgeValues {
			for _, ctr := range []uint64{0, 7, 8, 1 << 32, MaxCounter - 1} {
				s, r := pair(t, suite, kid, WithCounter(ctr))
				pt := []byte(fmt.Sprintf("kid=%d ctr=%d", kid, ctr))
				ct, err := s.Seal(nil, []byte("md"), pt)
				if err != nil {
					t.Fatal(err)
				}
				h, _, err := ParseHeader(ct)
				if err != nil || h.KID != kid || h.CTR != ctr {
					t.Fatalf("header %+v err %v, want kid %d ctr %d", h, err, kid, ctr)
				}
				if got, err := r.Open(nil, []byte("md"), ct); err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("%v kid=%d ctr=%d: %v", suite, kid, ctr, err)
				}
			}
		}
	}
}

func TestInPlace(t *testing.T) {
	for _, suite := range allSuites {
		s, r := pair(t, suite, 1000)
		for _, n := range []int{0, 1, 100, 1200} {
			pt := randBytes(n)
			buf := make([]byte, n, n+s.Overhead())
			copy(buf, pt)
			ct, err := s.Seal(buf[:0], nil, buf)
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 && &ct[0] != &buf[0] {
				t.Fatalf("%v: seal with room reallocated", suite)
			}
			got, err := r.Open(ct[:0], nil, ct)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("%v n=%d in-place open: %v", suite, n, err)
			}
		}
	}
}

func TestAppendsToDst(t *testing.T) {
	s, r := pair(t, AES128GCMSHA256_128, 5)
	ct, _ := s.Seal([]byte("prefix"), nil, []byte("media"))
	if !bytes.HasPrefix(ct, []byte("prefix")) {
		t.Fatal("Seal did not append")
	}
	pt, err := r.Open([]byte("out:"), nil, ct[len("prefix"):])
	if err != nil || string(pt) != "out:media" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
}

func TestTamperRejected(t *testing.T) {
	for _, suite := range allSuites {
		s, r := pair(t, suite, 9)
		md := []byte("namespace/track/group/object")
		ct, _ := s.Seal(nil, md, []byte("a frame of media"))
		for i := range ct {
			bad := bytes.Clone(ct)
			bad[i] ^= 0x01
			if _, err := r.Open(nil, md, bad); err == nil {
				t.Fatalf("%v: flipped byte %d accepted", suite, i)
			}
		}
		mdBad := bytes.Clone(md)
		mdBad[0] ^= 1
		if _, err := r.Open(nil, mdBad, ct); !errors.Is(err, ErrAuthentication) {
			t.Fatalf("%v: altered metadata: %v", suite, err)
		}
		if _, err := r.Open(nil, md, ct[:len(ct)-1]); !errors.Is(err, ErrAuthentication) {
			t.Fatalf("%v: truncated tag: %v", suite, err)
		}
		hl := HeaderLen(9, 0)
		if _, err := r.Open(nil, md, ct[:hl+suite.TagSize()-1]); !errors.Is(err, ErrTruncated) {
			t.Fatalf("%v: shorter than tag: %v", suite, err)
		}
		// The real ciphertext still opens: failures did not consume the counter.
		if _, err := r.Open(nil, md, ct); err != nil {
			t.Fatalf("%v: genuine ciphertext after forgeries: %v", suite, err)
		}
	}
}

func TestErrorsAreTypedAndCounted(t *testing.T) {
	s, r := pair(t, AES128GCMSHA256_128, 3)
	ct, _ := s.Seal(nil, nil, []byte("x"))
	other, _ := NewSender(AES128GCMSHA256_128, 4, randBytes(16))
	ct4, _ := other.Seal(nil, nil, []byte("x"))
	bad := bytes.Clone(ct)
	bad[len(bad)-1] ^= 1
	for _, tc := range []struct {
		in   []byte
		want error
	}{
		{[]byte{0x80}, ErrMalformedHeader},
		{ct4, ErrUnknownKID},
		{bad, ErrAuthentication},
		{ct, nil},
		{ct, ErrReplay},
		{ct[:2], ErrTruncated},
	} {
		if _, err := r.Open(nil, nil, tc.in); !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("Open(%x) = %v, want %v", tc.in, err, tc.want)
		}
	}
	want := ReceiverStats{Opened: 1, Malformed: 2, UnknownKID: 1, AuthFailed: 1, Replayed: 1}
	if got := r.Stats(); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

func TestReplayWindow(t *testing.T) {
	s, r := pair(t, AES128GCMSHA256_128, 1)
	var cts [][]byte
	for range 3000 {
		ct, _ := s.Seal(nil, nil, []byte("f"))
		cts = append(cts, ct)
	}
	// Out of order within the window: accepted once each.
	order := []int{5, 3, 4, 0, 1, 2, 1500, 1000, 600, 477}
	for _, i := range order {
		if _, err := r.Open(nil, nil, cts[i]); err != nil {
			t.Fatalf("ctr %d: %v", i, err)
		}
	}
	for _, i := range order {
		if _, err := r.Open(nil, nil, cts[i]); !errors.Is(err, ErrReplay) {
			t.Fatalf("ctr %d replay: %v", i, err)
		}
	}
	// The window holds 477..1500, 1024 values: 476 is just out.
	if _, err := r.Open(nil, nil, cts[476]); !errors.Is(err, ErrReplay) {
		t.Fatalf("ctr 476, too old: %v", err)
	}
	if _, err := r.Open(nil, nil, cts[478]); err != nil {
		t.Fatalf("ctr 478, inside window: %v", err)
	}
	// A jump far ahead clears the window.
	if _, err := r.Open(nil, nil, cts[2999]); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Open(nil, nil, cts[1600]); !errors.Is(err, ErrReplay) {
		t.Fatalf("ctr 1600 after 2999: %v", err)
	}
	if _, err := r.Open(nil, nil, cts[2000]); err != nil {
		t.Fatalf("ctr 2000 after 2999: %v", err)
	}
}

func TestReplayProtectionOff(t *testing.T) {
	base := randBytes(16)
	s, _ := NewSender(AES128GCMSHA256_128, 1, base)
	r := NewReceiver(WithReplayWindow(0))
	r.AddKey(AES128GCMSHA256_128, 1, base)
	ct, _ := s.Seal(nil, nil, []byte("f"))
	for range 2 {
		if _, err := r.Open(nil, nil, ct); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSenderRefusesPastCounterLimit(t *testing.T) {
	s, _ := pair(t, AES128GCMSHA256_128, 1, WithCounter(MaxCounter-2))
	for i := range 2 {
		if _, err := s.Seal(nil, nil, nil); err != nil {
			t.Fatalf("seal %d: %v", i, err)
		}
	}
	for range 3 {
		if _, err := s.Seal(nil, nil, nil); !errors.Is(err, ErrCounterExhausted) {
			t.Fatalf("seal past limit: %v", err)
		}
	}
	if s.Counter() != MaxCounter { // the limit itself, never used
		t.Fatalf("counter moved past limit: %d", s.Counter())
	}
	s2, _ := pair(t, AES128GCMSHA256_128, 1, WithCounterLimit(3))
	for range 3 {
		if _, err := s2.Seal(nil, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s2.Seal(nil, nil, nil); !errors.Is(err, ErrCounterExhausted) {
		t.Fatalf("WithCounterLimit: %v", err)
	}
}

func TestSenderRefusesPastBlockLimit(t *testing.T) {
	s, _ := pair(t, AES128CTRHMACSHA256_80, 1)
	s.blocks.Store(MaxBlocks - 2) // one empty seal costs one block
	if _, err := s.Seal(nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal(nil, nil, make([]byte, 17)); !errors.Is(err, ErrCounterExhausted) {
		t.Fatalf("seal past block limit: %v", err)
	}
	if _, err := s.Seal(nil, nil, nil); !errors.Is(err, ErrCounterExhausted) {
		t.Fatalf("limit must stick: %v", err)
	}
}

// Concurrent senders never reuse a counter, and a shared receiver accepts
// each ciphertext exactly once.
func TestConcurrentSealOpen(t *testing.T) {
	for _, suite := range []CipherSuite{AES128GCMSHA256_128, AES128CTRHMACSHA256_32} {
		s, r := pair(t, suite, 77)
		const workers, each = 8, 500
		out := make(chan []byte, workers*each)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					ct, err := s.Seal(nil, nil, []byte{byte(i)})
					if err != nil {
						t.Error(err)
						return
					}
					out <- ct
				}
			}()
		}
		wg.Wait()
		close(out)
		seen := map[uint64]bool{}
		var all [][]byte
		for ct := range out {
			h, _, _ := ParseHeader(ct)
			if seen[h.CTR] {
				t.Fatalf("counter %d reused", h.CTR)
			}
			seen[h.CTR] = true
			all = append(all, ct, ct) // every ciphertext twice
		}
		var ok sync.WaitGroup
		var opened, replays int64
		var mu sync.Mutex
		for w := range workers {
			ok.Add(1)
			go func() {
				defer ok.Done()
				for i := w; i < len(all); i += workers {
					_, err := r.Open(nil, nil, all[i])
					mu.Lock()
					switch {
					case err == nil:
						opened++
					case errors.Is(err, ErrReplay):
						replays++
					default:
						t.Error(err)
					}
					mu.Unlock()
				}
			}()
		}
		ok.Wait()
		// Counters arrive out of order across workers; the window (1024)
		// is smaller than 4000, so a few early ones may be too old. What
		// must hold: no ciphertext opens twice.
		if opened > workers*each || opened+replays != 2*workers*each {
			t.Fatalf("%v: opened %d replays %d of %d distinct", suite, opened, replays, workers*each)
		}
	}
}

func TestKeyManagement(t *testing.T) {
	base := randBytes(16)
	r := NewReceiver()
	if err := r.AddKey(AES128GCMSHA256_128, 1, base); err != nil {
		t.Fatal(err)
	}
	if err := r.AddKey(AES128GCMSHA256_128, 1, base); !errors.Is(err, ErrDuplicateKID) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := r.AddKey(CipherSuite(9), 2, base); !errors.Is(err, ErrUnsupportedSuite) {
		t.Fatalf("bad suite: %v", err)
	}
	if err := r.AddKey(AES128GCMSHA256_128, 2, nil); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("empty key: %v", err)
	}
	s, _ := NewSender(AES128GCMSHA256_128, 1, base)
	ct, _ := s.Seal(nil, nil, []byte("x"))
	if !r.RemoveKey(1) || r.RemoveKey(1) || r.HasKey(1) {
		t.Fatal("RemoveKey")
	}
	if _, err := r.Open(nil, nil, ct); !errors.Is(err, ErrUnknownKID) {
		t.Fatalf("removed key: %v", err)
	}
}

func TestKeyResolver(t *testing.T) {
	base := randBytes(32)
	calls := 0
	r := NewReceiver(WithKeyResolver(func(kid uint64) (CipherSuite, []byte, bool) {
		calls++
		return AES256GCMSHA512_128, base, kid < 10
	}))
	s, _ := NewSender(AES256GCMSHA512_128, 3, base)
	for range 3 {
		ct, _ := s.Seal(nil, nil, []byte("x"))
		if _, err := r.Open(nil, nil, ct); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 || r.Len() != 1 {
		t.Fatalf("resolver called %d times, %d keys; want 1 and 1 (cached)", calls, r.Len())
	}
	s11, _ := NewSender(AES256GCMSHA512_128, 11, base)
	ct, _ := s11.Seal(nil, nil, []byte("x"))
	if _, err := r.Open(nil, nil, ct); !errors.Is(err, ErrUnknownKID) {
		t.Fatalf("refused KID: %v", err)
	}
	// Forged ciphertexts under valid-looking KIDs are derived for but not
	// kept: memory does not grow with what an attacker sends.
	for kid := uint64(4); kid < 10; kid++ {
		forged := append(AppendHeader(nil, kid, 0), make([]byte, 20)...)
		if _, err := r.Open(nil, nil, forged); !errors.Is(err, ErrAuthentication) {
			t.Fatalf("forged KID %d: %v", kid, err)
		}
	}
	if r.Len() != 1 {
		t.Fatalf("%d keys cached after forgeries, want 1", r.Len())
	}
	// A replay of the first ciphertext under a resolved key is caught.
	s5, _ := NewSender(AES256GCMSHA512_128, 5, base)
	ct5, _ := s5.Seal(nil, nil, []byte("y"))
	if _, err := r.Open(nil, nil, ct5); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Open(nil, nil, ct5); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay under resolved key: %v", err)
	}
}

func TestZeroAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector makes sync.Pool drop items; run without -race")
	}
	for _, suite := range allSuites {
		s, r := pair(t, suite, 0x1234)
		pt := randBytes(1200)
		md := randBytes(40)
		ctBuf := make([]byte, 0, 1200+s.Overhead())
		ptBuf := make([]byte, 0, 1200)
		var ct []byte
		if a := testing.AllocsPerRun(200, func() { ct, _ = s.Seal(ctBuf[:0], md, pt) }); a != 0 {
			t.Errorf("%v Seal: %v allocs", suite, a)
		}
		// Open a fresh ciphertext each run: a replayed one would fail early.
		cts := make([][]byte, 0, 201)
		for range 201 {
			c, _ := s.Seal(nil, md, pt)
			cts = append(cts, c)
		}
		i := 0
		if a := testing.AllocsPerRun(200, func() {
			if _, err := r.Open(ptBuf[:0], md, cts[i]); err != nil {
				t.Fatal(err)
			}
			i++
		}); a != 0 {
			t.Errorf("%v Open: %v allocs", suite, a)
		}
		_ = ct
	}
}

func FuzzOpen(f *testing.F) {
	base := bytes.Repeat([]byte{7}, 96)
	r := NewReceiver()
	for i, suite := range allSuites {
		r.AddKey(suite, uint64(i), base[:suite.KeySize()])
		s, _ := NewSender(suite, uint64(i), base[:suite.KeySize()])
		ct, _ := s.Seal(nil, []byte("md"), []byte("seed frame"))
		f.Add(ct, []byte("md"))
	}
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0xff, 0xff}, []byte("x"))
	f.Fuzz(func(t *testing.T, ct, md []byte) {
		pt, err := r.Open(nil, md, ct)
		if err == nil {
			// Only an unmodified seed may open (once: the window remembers).
			if len(pt) != len("seed frame") {
				t.Fatalf("opened %x to %x", ct, pt)
			}
			return
		}
		for _, want := range []error{ErrMalformedHeader, ErrTruncated, ErrUnknownKID, ErrAuthentication, ErrReplay} {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("untyped error %v", err)
	})
}

// Many goroutines hammering an exhausted sender never get a counter: the
// atomic add overshoots the limit but cannot wrap around.
func TestExhaustedSenderUnderContention(t *testing.T) {
	s, _ := pair(t, AES128GCMSHA256_128, 1, WithCounter(MaxCounter-100))
	var wg sync.WaitGroup
	var sealed atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				if _, err := s.Seal(nil, nil, nil); err == nil {
					sealed.Add(1)
				} else if !errors.Is(err, ErrCounterExhausted) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if sealed.Load() != 100 {
		t.Fatalf("%d seals succeeded, want exactly 100", sealed.Load())
	}
}

// TestSenderPadding: a Sender fills its 128-byte size class exactly, so two
// Senders never share a cache line (see the padding in Sender).
func TestSenderPadding(t *testing.T) {
	if n := unsafe.Sizeof(Sender{}); n != 128 {
		t.Fatalf("sizeof(Sender) = %d, want 128: adjust the padding", n)
	}
}
