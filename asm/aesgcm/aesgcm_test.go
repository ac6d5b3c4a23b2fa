package aesgcm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/moqsframe/moqsframe/internal/impl"
	"github.com/moqsframe/moqsframe/internal/race"
)

func stdGCM(t testing.TB, key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// selectImpl forces the named implementation (see Implementations) through
// the internal/impl test hook and returns a function that restores the
// default (fastest) one.
func selectImpl(name string) (restore func(), err error) {
	if !impl.Select("aesgcm", name) {
		return func() {}, fmt.Errorf("aesgcm: implementation %q not available", name)
	}
	return func() { impl.Reset("aesgcm") }, nil
}

// forEachImpl runs f with every available implementation selected.
func forEachImpl(t *testing.T, f func(t *testing.T)) {
	for _, name := range Implementations() {
		t.Run(name, func(t *testing.T) {
			restore, err := selectImpl(name)
			if err != nil {
				t.Fatal(err)
			}
			defer restore()
			if Implementation() != name {
				t.Fatalf("Implementation() = %q, want %q", Implementation(), name)
			}
			f(t)
		})
	}
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// check seals and opens pt/aad with a and with ref, in place and out of place,
// at unaligned offsets, and checks tampering is detected.
func check(t *testing.T, a *AEAD, ref cipher.AEAD, r *rand.Rand, pt, aad []byte, tamper bool) {
	t.Helper()
	nonce := randBytes(r, 12)
	want := ref.Seal(nil, nonce, pt, aad)

	// Out of place, unaligned output and input.
	off := 1 + r.IntN(15)
	inBuf := make([]byte, len(pt)+32)
	in := inBuf[off : off+len(pt)]
	copy(in, pt)
	dstBuf := make([]byte, len(pt)+64)
	doff := r.IntN(16)
	got := a.Seal(dstBuf[doff:doff], nonce, in, aad)
	if !bytes.Equal(got, want) {
		t.Fatalf("Seal(len=%d, aad=%d) mismatch\n got %x\nwant %x", len(pt), len(aad), got, want)
	}
	if !bytes.Equal(in, pt) {
		t.Fatalf("Seal modified its input")
	}
	// Append semantics.
	prefix := []byte("prefix")
	got2 := a.Seal(append([]byte(nil), prefix...), nonce, pt, aad)
	if !bytes.Equal(got2[:len(prefix)], prefix) || !bytes.Equal(got2[len(prefix):], want) {
		t.Fatalf("Seal append mismatch")
	}
	// In place.
	buf := make([]byte, len(pt)+16+off)[off:]
	copy(buf, pt)
	got3 := a.Seal(buf[:0], nonce, buf[:len(pt)], aad)
	if !bytes.Equal(got3, want) {
		t.Fatalf("in-place Seal(len=%d) mismatch", len(pt))
	}
	// Open out of place.
	pt2, err := a.Open(nil, nonce, want, aad)
	if err != nil || !bytes.Equal(pt2, pt) {
		t.Fatalf("Open(len=%d, aad=%d) failed: %v", len(pt), len(aad), err)
	}
	// Open in place.
	ct := append([]byte(nil), want...)
	pt3, err := a.Open(ct[:0], nonce, ct, aad)
	if err != nil || !bytes.Equal(pt3, pt) {
		t.Fatalf("in-place Open(len=%d) failed: %v", len(pt), err)
	}
	if !tamper {
		return
	}
	// Tampering.
	bad := func(what string, nonce, ct, aad []byte) {
		t.Helper()
		out := make([]byte, len(ct)-16)
		for i := range out {
			out[i] = 0xaa
		}
		res, err := a.Open(out[:0], nonce, ct, aad)
		if err != ErrOpen || res != nil {
			t.Fatalf("Open accepted tampered %s (len=%d aad=%d)", what, len(pt), len(aad))
		}
		for _, b := range out {
			if b != 0 {
				t.Fatalf("Open did not zero output after tampered %s", what)
			}
		}
	}
	c := append([]byte(nil), want...)
	c[len(c)-1-r.IntN(16)] ^= 1 << r.IntN(8)
	bad("tag", nonce, c, aad)
	if len(pt) > 0 {
		c = append([]byte(nil), want...)
		c[r.IntN(len(pt))] ^= 1 << r.IntN(8)
		bad("ciphertext", nonce, c, aad)
	}
	if len(aad) > 0 {
		aad2 := append([]byte(nil), aad...)
		aad2[r.IntN(len(aad))] ^= 1 << r.IntN(8)
		bad("aad", nonce, want, aad2)
	}
	n2 := append([]byte(nil), nonce...)
	n2[r.IntN(12)] ^= 1 << r.IntN(8)
	bad("nonce", n2, want, aad)
}

var keySizes = []int{16, 32}

func TestAllLengths(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, ks := range keySizes {
			r := rand.New(rand.NewPCG(1, uint64(ks)))
			key := randBytes(r, ks)
			a, err := New(key)
			if err != nil {
				t.Fatal(err)
			}
			ref := stdGCM(t, key)
			for n := 0; n <= 1024; n++ {
				aadLen := r.IntN(40)
				if n%3 == 0 {
					aadLen = r.IntN(301)
				}
				check(t, a, ref, r, randBytes(r, n), randBytes(r, aadLen), n%7 == 0 || n < 80)
			}
		}
	})
}

func TestAADLengths(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, ks := range keySizes {
			r := rand.New(rand.NewPCG(2, uint64(ks)))
			key := randBytes(r, ks)
			a, _ := New(key)
			ref := stdGCM(t, key)
			for n := 0; n <= 300; n++ {
				check(t, a, ref, r, randBytes(r, r.IntN(100)), randBytes(r, n), n%5 == 0)
			}
			for i := 0; i < 20; i++ {
				check(t, a, ref, r, randBytes(r, r.IntN(2000)), randBytes(r, r.IntN(5000)), true)
			}
		}
	})
}

func TestRandomLengths(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, ks := range keySizes {
			r := rand.New(rand.NewPCG(3, uint64(ks)))
			key := randBytes(r, ks)
			a, _ := New(key)
			ref := stdGCM(t, key)
			iters := 200
			if testing.Short() {
				iters = 30
			}
			for i := 0; i < iters; i++ {
				check(t, a, ref, r, randBytes(r, r.IntN(64<<10+1)), randBytes(r, r.IntN(64)), i%10 == 0)
			}
		}
	})
}

func TestShortCiphertext(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		a, _ := New(make([]byte, 16))
		for n := 0; n < 16; n++ {
			if _, err := a.Open(nil, make([]byte, 12), make([]byte, n), nil); err != ErrOpen {
				t.Fatalf("Open of %d bytes: err = %v", n, err)
			}
		}
	})
}

func TestBadKeyAndNonce(t *testing.T) {
	for _, n := range []int{0, 15, 24, 33} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("New accepted %d-byte key", n)
		}
	}
	a, _ := New(make([]byte, 16))
	if a.NonceSize() != 12 || a.Overhead() != 16 {
		t.Fatal("bad NonceSize/Overhead")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Seal accepted 8-byte nonce")
		}
	}()
	a.Seal(nil, make([]byte, 8), nil, nil)
}

func TestInexactOverlapPanics(t *testing.T) {
	a, _ := New(make([]byte, 16))
	buf := make([]byte, 100)
	defer func() {
		if recover() == nil {
			t.Fatal("Seal accepted inexact overlap")
		}
	}()
	a.Seal(buf[1:1], make([]byte, 12), buf[:50], nil)
}

func makeBatch(r *rand.Rand, count int, maxLen int) (msgs []Message, pts, aads, nonces [][]byte) {
	for i := 0; i < count; i++ {
		var n int
		switch r.IntN(4) {
		case 0:
			n = 0
		case 1:
			n = r.IntN(64)
		default:
			n = r.IntN(maxLen + 1)
		}
		pt := randBytes(r, n)
		aad := randBytes(r, r.IntN(3)*r.IntN(40))
		nonce := randBytes(r, 12)
		pts, aads, nonces = append(pts, pt), append(aads, aad), append(nonces, nonce)
		m := Message{Nonce: nonce, AAD: aad}
		if r.IntN(2) == 0 { // in place
			buf := make([]byte, n+16+1)[1:]
			copy(buf, pt)
			m.In, m.Out = buf[:n], buf
		} else {
			m.In = append([]byte(nil), pt...)
			m.Out = make([]byte, n+16)
		}
		msgs = append(msgs, m)
	}
	return
}

func TestBatch(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, ks := range keySizes {
			r := rand.New(rand.NewPCG(4, uint64(ks)))
			key := randBytes(r, ks)
			a, _ := New(key)
			ref := stdGCM(t, key)
			for count := 0; count <= 33; count++ {
				for _, maxLen := range []int{200, 1500, 5000} {
					msgs, pts, aads, nonces := makeBatch(r, count, maxLen)
					a.SealBatch(msgs)
					for i, m := range msgs {
						want := ref.Seal(nil, nonces[i], pts[i], aads[i])
						if !bytes.Equal(m.Out, want) {
							t.Fatalf("SealBatch count=%d msg %d len=%d mismatch", count, i, len(pts[i]))
						}
					}
					// Open: tamper with some.
					tampered := map[int]bool{}
					for i := range msgs {
						m := &msgs[i]
						ct := m.Out
						if r.IntN(2) == 0 {
							m.In, m.Out = ct, ct[:len(ct)-16]
						} else {
							m.In, m.Out = ct, make([]byte, len(ct)-16)
						}
						m.Err = fmt.Errorf("stale")
						if r.IntN(4) == 0 {
							m.In[r.IntN(len(m.In))] ^= 1
							tampered[i] = true
						}
					}
					failed := a.OpenBatch(msgs)
					if failed != len(tampered) {
						t.Fatalf("OpenBatch failed=%d want %d", failed, len(tampered))
					}
					for i, m := range msgs {
						if tampered[i] {
							if m.Err != ErrOpen {
								t.Fatalf("msg %d: tampered but Err=%v", i, m.Err)
							}
							for _, b := range m.Out {
								if b != 0 {
									t.Fatalf("msg %d: failed Out not zeroed", i)
								}
							}
							continue
						}
						if m.Err != nil || !bytes.Equal(m.Out, pts[i]) {
							t.Fatalf("OpenBatch msg %d (len %d): err=%v mismatch", i, len(pts[i]), m.Err)
						}
					}
				}
			}
		}
	})
}

func TestBatchShortIn(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		a, _ := New(make([]byte, 16))
		msgs := []Message{{Nonce: make([]byte, 12), In: make([]byte, 5), Out: []byte{1, 2}}}
		if a.OpenBatch(msgs) != 1 || msgs[0].Err != ErrOpen {
			t.Fatal("short In accepted")
		}
	})
}

func TestAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	forEachImpl(t, func(t *testing.T) {
		a, _ := New(make([]byte, 16))
		nonce := make([]byte, 12)
		pt := make([]byte, 1200)
		aad := make([]byte, 10)
		dst := make([]byte, 0, 1300)
		ct := a.Seal(nil, nonce, pt, aad)
		msgs, _, _, _ := makeBatch(rand.New(rand.NewPCG(5, 5)), 16, 1500)
		if n := testing.AllocsPerRun(100, func() { a.Seal(dst[:0], nonce, pt, aad) }); n != 0 {
			t.Errorf("Seal allocs = %v", n)
		}
		if n := testing.AllocsPerRun(100, func() { a.Open(dst[:0], nonce, ct, aad) }); n != 0 {
			t.Errorf("Open allocs = %v", n)
		}
		if n := testing.AllocsPerRun(100, func() { a.SealBatch(msgs) }); n != 0 {
			t.Errorf("SealBatch allocs = %v", n)
		}
		// A nonce and AAD built on the caller's stack must stay there.
		if n := testing.AllocsPerRun(100, func() {
			var nonce [NonceSize]byte
			var aad [64]byte
			nonce[11], aad[0] = 1, 2
			ct := a.Seal(dst[:0], nonce[:], pt, aad[:])
			if _, err := a.Open(ct[:0], nonce[:], ct, aad[:]); err != nil {
				t.Error(err)
			}
		}); n != 0 {
			t.Errorf("Seal/Open with nonce and AAD on the stack: allocs = %v", n)
		}
		for i := range msgs {
			msgs[i].In, msgs[i].Out = msgs[i].Out, msgs[i].In[:cap(msgs[i].In)]
		}
		// Shapes for open: Out = len(In)-16.
		for i := range msgs {
			msgs[i].Out = make([]byte, len(msgs[i].In)-16)
		}
		if n := testing.AllocsPerRun(100, func() { a.OpenBatch(msgs) }); n != 0 {
			t.Errorf("OpenBatch allocs = %v", n)
		}
	})
}

func TestConcurrent(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		key := make([]byte, 32)
		a, _ := New(key)
		ref := stdGCM(t, key)
		done := make(chan error, 4)
		for g := 0; g < 4; g++ {
			go func(g int) {
				r := rand.New(rand.NewPCG(6, uint64(g)))
				for i := 0; i < 200; i++ {
					pt := randBytes(r, r.IntN(3000))
					nonce := randBytes(r, 12)
					if !bytes.Equal(a.Seal(nil, nonce, pt, nil), ref.Seal(nil, nonce, pt, nil)) {
						done <- fmt.Errorf("mismatch")
						return
					}
				}
				done <- nil
			}(g)
		}
		for g := 0; g < 4; g++ {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzImplementations(f *testing.F) {
	f.Add([]byte("0123456789abcdef"), []byte("nonce-12byte"), []byte("hello"), []byte("aad"))
	f.Add(make([]byte, 32), make([]byte, 12), make([]byte, 300), []byte{})
	f.Add(make([]byte, 16), make([]byte, 12), make([]byte, 4097), make([]byte, 257))
	f.Fuzz(func(t *testing.T, key, nonce, pt, aad []byte) {
		if len(key) >= 32 {
			key = key[:32]
		} else if len(key) >= 16 {
			key = key[:16]
		} else {
			return
		}
		if len(nonce) < 12 {
			return
		}
		nonce = nonce[:12]
		ref := stdGCM(t, key)
		want := ref.Seal(nil, nonce, pt, aad)
		for _, name := range Implementations() {
			restore, _ := selectImpl(name)
			a, err := New(key)
			if err != nil {
				t.Fatal(err)
			}
			got := a.Seal(nil, nonce, pt, aad)
			if !bytes.Equal(got, want) {
				restore()
				t.Fatalf("%s: Seal mismatch", name)
			}
			msgs := []Message{{Nonce: nonce, AAD: aad, In: pt, Out: make([]byte, len(pt)+16)}}
			a.SealBatch(msgs)
			if !bytes.Equal(msgs[0].Out, want) {
				restore()
				t.Fatalf("%s: SealBatch mismatch", name)
			}
			var sl SealList
			sl.Add(make([]byte, len(pt)+16), pt, nonce, aad)
			sl.Add(make([]byte, len(pt)+16), pt, nonce, aad)
			a.SealList(&sl)
			for i := range sl.d {
				if !bytes.Equal(unsafe.Slice(sl.d[i].out, len(pt)+16), want) {
					restore()
					t.Fatalf("%s: SealList mismatch", name)
				}
			}
			back, err := a.Open(nil, nonce, got, aad)
			if err != nil || !bytes.Equal(back, pt) {
				restore()
				t.Fatalf("%s: Open failed", name)
			}
			// OpenList: the good ciphertext and a copy with the last
			// tag byte flipped; only the first opens.
			bad := bytes.Clone(got)
			bad[len(bad)-1] ^= 1
			var ol OpenList
			back2, back3 := make([]byte, len(pt)), make([]byte, len(pt))
			ol.Add(back2, got, nonce, aad)
			ol.Add(back3, bad, nonce, aad)
			if a.OpenList(&ol) != 1 || !ol.OK(0) || ol.OK(1) || !bytes.Equal(back2, pt) || !bytes.Equal(back3, make([]byte, len(pt))) {
				restore()
				t.Fatalf("%s: OpenList mismatch", name)
			}
			// CTR keystream near the 32-bit counter wrap.
			var iv [16]byte
			copy(iv[:], nonce)
			iv[12], iv[13], iv[14], iv[15] = 0xff, 0xff, 0xff, byte(0xf0|len(aad)&0xf)
			c, _ := NewCTR(key)
			ks := make([]byte, len(pt))
			c.XORKeyStream(ks, pt, &iv)
			if !bytes.Equal(ks, refCTR(t, key, iv, pt)) {
				restore()
				t.Fatalf("%s: CTR mismatch", name)
			}
			if len(got) > 0 {
				got[len(got)/2] ^= 0x80
				if _, err := a.Open(nil, nonce, got, aad); err == nil {
					restore()
					t.Fatalf("%s: Open accepted tampered ciphertext", name)
				}
			}
			restore()
		}
	})
}

// TestOpenBatchMixedShort mixes messages with len(In) < 16 among valid and
// tampered ones across several assembly chunks.
func TestOpenBatchMixedShort(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(8, 8))
		key := randBytes(r, 16)
		a, _ := New(key)
		ref := stdGCM(t, key)
		for _, count := range []int{1, 15, 16, 17, 40} {
			msgs := make([]Message, count)
			want := make([][]byte, count)
			wantErr := make([]bool, count)
			nFail := 0
			for i := range msgs {
				nonce := randBytes(r, 12)
				aad := randBytes(r, r.IntN(20))
				switch r.IntN(4) {
				case 0: // too short to hold a tag
					msgs[i] = Message{Nonce: nonce, AAD: aad, In: randBytes(r, r.IntN(16)), Out: randBytes(r, 4)}
					wantErr[i] = true
				case 1: // tampered
					ct := ref.Seal(nil, nonce, randBytes(r, r.IntN(300)), aad)
					ct[r.IntN(len(ct))] ^= 4
					msgs[i] = Message{Nonce: nonce, AAD: aad, In: ct, Out: make([]byte, len(ct)-16)}
					wantErr[i] = true
				default:
					pt := randBytes(r, r.IntN(300))
					ct := ref.Seal(nil, nonce, pt, aad)
					msgs[i] = Message{Nonce: nonce, AAD: aad, In: ct, Out: make([]byte, len(pt))}
					want[i] = pt
				}
				if wantErr[i] {
					nFail++
				}
			}
			if got := a.OpenBatch(msgs); got != nFail {
				t.Fatalf("count=%d: failed=%d want %d", count, got, nFail)
			}
			for i, m := range msgs {
				if wantErr[i] {
					if m.Err != ErrOpen || !bytes.Equal(m.Out, make([]byte, len(m.Out))) {
						t.Fatalf("msg %d: err=%v, out not zeroed", i, m.Err)
					}
				} else if m.Err != nil || !bytes.Equal(m.Out, want[i]) {
					t.Fatalf("msg %d: err=%v mismatch", i, m.Err)
				}
			}
		}
	})
}

// Switching implementations while other goroutines seal and open must be
// neither a data race (the switches are atomics) nor change any result.
func TestSelectWhileInUse(t *testing.T) {
	t.Cleanup(func() { impl.Reset("aesgcm") })
	key, nonce, pt := make([]byte, 16), make([]byte, 12), make([]byte, 1000)
	a, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	want := stdGCM(t, key).Seal(nil, nonce, pt, nil)
	done := make(chan error)
	for range 2 {
		go func() {
			for range 200 {
				ct := a.Seal(nil, nonce, pt, nil)
				if !bytes.Equal(ct, want) {
					done <- fmt.Errorf("Seal on %s differs", Implementation())
					return
				}
				if _, err := a.Open(nil, nonce, ct, nil); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for i := range 200 {
		names := Implementations()
		impl.Select("aesgcm", names[i%len(names)])
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// tagEqual accepts only the exact tag: any single flipped bit, in either
// half, is refused.
func TestTagEqual(t *testing.T) {
	var tag [TagSize]byte
	for i := range tag {
		tag[i] = byte(i*37 + 1)
	}
	if !tagEqual(&tag, tag[:]) {
		t.Fatal("equal tags refused")
	}
	for bit := range 8 * TagSize {
		r := tag
		r[bit/8] ^= 1 << (bit % 8)
		if tagEqual(&tag, r[:]) {
			t.Fatalf("tag with bit %d flipped accepted", bit)
		}
	}
}

// SealList seals exactly what crypto/cipher does, on every implementation,
// for lists of 0..40 mixed messages (in place and not), reused after Reset.
func TestSealList(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, ks := range keySizes {
			r := rand.New(rand.NewPCG(8, uint64(ks)))
			key := randBytes(r, ks)
			a, _ := New(key)
			ref := stdGCM(t, key)
			var l SealList
			for count := 0; count <= 40; count++ {
				msgs, pts, aads, nonces := makeBatch(r, count, 1500)
				l.Reset()
				for _, m := range msgs {
					l.Add(m.Out, m.In, m.Nonce, m.AAD)
				}
				if l.Len() != count {
					t.Fatalf("Len %d, want %d", l.Len(), count)
				}
				a.SealList(&l)
				for i, m := range msgs {
					if want := ref.Seal(nil, nonces[i], pts[i], aads[i]); !bytes.Equal(m.Out, want) {
						t.Fatalf("SealList count=%d msg %d len=%d mismatch", count, i, len(pts[i]))
					}
				}
			}
		}
	})
}

func TestSealListMisusePanics(t *testing.T) {
	buf := make([]byte, 64)
	for name, f := range map[string]func(l *SealList){
		"nonce":   func(l *SealList) { l.Add(make([]byte, 26), make([]byte, 10), make([]byte, 11), nil) },
		"out len": func(l *SealList) { l.Add(make([]byte, 25), make([]byte, 10), make([]byte, 12), nil) },
		"overlap": func(l *SealList) { l.Add(buf[1:27], buf[:10], make([]byte, 12), nil) },
		"aad":     func(l *SealList) { l.Add(buf[:26], make([]byte, 10), make([]byte, 12), buf[20:30]) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f(new(SealList))
		}()
	}
}

func TestSealListAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	forEachImpl(t, func(t *testing.T) {
		a, _ := New(make([]byte, 16))
		msgs, _, _, _ := makeBatch(rand.New(rand.NewPCG(9, 9)), 32, 1200)
		var l SealList
		run := func() {
			l.Reset()
			for _, m := range msgs {
				l.Add(m.Out, m.In, m.Nonce, m.AAD)
			}
			a.SealList(&l)
		}
		run()
		if n := testing.AllocsPerRun(100, run); n != 0 {
			t.Fatalf("%v allocs per list of 32", n)
		}
	})
}

// OpenList opens what SealBatch sealed, on every implementation; tampered
// messages (body, tag or AAD) fail alone with their output zeroed.
func TestOpenList(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, ks := range keySizes {
			r := rand.New(rand.NewPCG(10, uint64(ks)))
			a, _ := New(randBytes(r, ks))
			var l OpenList
			for count := 0; count <= 40; count++ {
				msgs, pts, _, _ := makeBatch(r, count, 1500)
				a.SealBatch(msgs)
				l.Reset()
				tampered := map[int]bool{}
				for i := range msgs {
					m := &msgs[i]
					ct := m.Out
					in, out := ct, make([]byte, len(ct)-16)
					if r.IntN(2) == 0 {
						out = ct[:len(ct)-16] // in place
					}
					aad := m.AAD
					switch r.IntN(6) {
					case 0:
						in[r.IntN(len(in))] ^= 1
						tampered[i] = true
					case 1:
						aad = append(bytes.Clone(aad), 0)
						tampered[i] = true
					}
					m.In, m.Out, m.AAD = in, out, aad
					l.Add(out, in, m.Nonce, aad)
				}
				if failed := a.OpenList(&l); failed != len(tampered) {
					t.Fatalf("count=%d: %d failed, want %d", count, failed, len(tampered))
				}
				for i, m := range msgs {
					if tampered[i] {
						if l.OK(i) || !bytes.Equal(m.Out, make([]byte, len(m.Out))) {
							t.Fatalf("msg %d: tampered but OK=%v or output not zeroed", i, l.OK(i))
						}
						continue
					}
					if !l.OK(i) || !bytes.Equal(m.Out, pts[i]) {
						t.Fatalf("msg %d (len %d): OK=%v, output mismatch", i, len(pts[i]), l.OK(i))
					}
				}
			}
		}
	})
}

func TestOpenListMisusePanics(t *testing.T) {
	buf := make([]byte, 64)
	for name, f := range map[string]func(l *OpenList){
		"nonce":   func(l *OpenList) { l.Add(make([]byte, 10), make([]byte, 26), make([]byte, 11), nil) },
		"short":   func(l *OpenList) { l.Add(nil, make([]byte, 15), make([]byte, 12), nil) },
		"out len": func(l *OpenList) { l.Add(make([]byte, 11), make([]byte, 26), make([]byte, 12), nil) },
		"overlap": func(l *OpenList) { l.Add(buf[1:11], buf[:26], make([]byte, 12), nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f(new(OpenList))
		}()
	}
}

func TestOpenListAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	forEachImpl(t, func(t *testing.T) {
		a, _ := New(make([]byte, 16))
		msgs, _, _, _ := makeBatch(rand.New(rand.NewPCG(11, 11)), 32, 1200)
		a.SealBatch(msgs)
		outs := make([][]byte, len(msgs))
		for i, m := range msgs {
			outs[i] = make([]byte, len(m.Out)-16)
		}
		var l OpenList
		run := func() {
			l.Reset()
			for i, m := range msgs {
				l.Add(outs[i], m.Out, m.Nonce, m.AAD)
			}
			if a.OpenList(&l) != 0 {
				t.Fatal("open failed")
			}
		}
		run()
		if n := testing.AllocsPerRun(100, run); n != 0 {
			t.Fatalf("%v allocs per list of 32", n)
		}
	})
}
