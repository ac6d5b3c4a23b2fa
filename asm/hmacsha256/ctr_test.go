package hmacsha256

import (
	"bytes"
	"crypto/aes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/moqsframe/moqsframe/internal/impl"
)

// refSealCTR is SealCTR composed from crypto/aes (one block at a time, the
// 32-bit counter wrapping without carry, as RFC 9605 §4.5.1 uses it) and
// crypto/hmac.
func refSealCTR(key *[16]byte, macKey []byte, iv *[16]byte, pt []byte, prefix ...[]byte) (ct, mac []byte) {
	b, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err)
	}
	ct = make([]byte, len(pt))
	ctr := *iv
	var ks [16]byte
	for i := 0; i < len(pt); i += 16 {
		binary.BigEndian.PutUint32(ctr[12:], binary.BigEndian.Uint32(iv[12:])+uint32(i/16))
		b.Encrypt(ks[:], ctr[:])
		for j := i; j < min(i+16, len(pt)); j++ {
			ct[j] = pt[j] ^ ks[j-i]
		}
	}
	h := hmac.New(sha256.New, macKey)
	for _, p := range prefix {
		h.Write(p)
	}
	h.Write(ct)
	return ct, h.Sum(nil)
}

func newStitch(t testing.TB, key *[16]byte) *CTR {
	c := NewCTR(key)
	if c == nil {
		t.Skip("no stitched kernel in this build or on this CPU")
	}
	return c
}

// TestSealCTRDifferential compares SealCTR with the crypto/aes +
// crypto/hmac composition for every plaintext length 0..1100, with a
// prefix of random length (0..200) split in three at random points, both
// out of place and in place, and a counter that starts near its wrap.
func TestSealCTRDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 1400)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	var key [16]byte
	copy(key[:], buf[1300:])
	macKey := buf[1316:1348]
	c := newStitch(t, &key)
	k := New(macKey)
	for n := 0; n <= 1100; n++ {
		var iv [16]byte
		copy(iv[:], buf[n%100:])
		if n%3 == 0 {
			binary.BigEndian.PutUint32(iv[12:], 0xffffffff-uint32(n%70)) // wraps within the message
		}
		pl := rng.IntN(201)
		prefix := buf[1100 : 1100+pl]
		i := rng.IntN(pl + 1)
		j := i + rng.IntN(pl-i+1)
		pt := buf[:n]
		wantCT, wantMAC := refSealCTR(&key, macKey, &iv, pt, prefix)
		ct := make([]byte, n)
		var mac [Size]byte
		if !k.SealCTR(&mac, c, &iv, ct, pt, prefix[:i], prefix[i:j], prefix[j:]) {
			t.Fatal("SealCTR declined with the kernel enabled")
		}
		if !bytes.Equal(ct, wantCT) || !bytes.Equal(mac[:], wantMAC) {
			t.Fatalf("len %d prefix %d (split %d/%d): ciphertext or MAC differs", n, pl, i, j)
		}
		inPlace := append([]byte(nil), pt...)
		k.SealCTR(&mac, c, &iv, inPlace, inPlace, prefix)
		if !bytes.Equal(inPlace, wantCT) || !bytes.Equal(mac[:], wantMAC) {
			t.Fatalf("len %d prefix %d in place: ciphertext or MAC differs", n, pl)
		}
	}
}

// TestSealCTRDeclines checks that SealCTR does nothing and reports false
// when the generic block function is selected, so callers fall back.
func TestSealCTRDeclines(t *testing.T) {
	var key [16]byte
	c := newStitch(t, &key)
	if !impl.Select("hmacsha256", "generic") {
		t.Fatal("cannot select generic")
	}
	defer impl.Reset("hmacsha256")
	ct := []byte{1, 2, 3}
	var mac [Size]byte
	if New(nil).SealCTR(&mac, c, new([16]byte), ct, make([]byte, 3)) {
		t.Fatal("SealCTR ran with SHA-NI deselected")
	}
	if !bytes.Equal(ct, []byte{1, 2, 3}) || mac != [Size]byte{} {
		t.Fatal("SealCTR wrote output while declining")
	}
}

func TestSealCTRAllocs(t *testing.T) {
	var key [16]byte
	c := newStitch(t, &key)
	k := New(nil)
	pt, ct := make([]byte, 1200), make([]byte, 1200)
	fixed, aad := make([]byte, 36), make([]byte, 20)
	var iv [16]byte
	var mac [Size]byte
	if n := testing.AllocsPerRun(100, func() { k.SealCTR(&mac, c, &iv, ct, pt, fixed, aad) }); n != 0 {
		t.Fatalf("SealCTR: %v allocations, want 0", n)
	}
}

// FuzzSealCTR compares SealCTR with the composition for any plaintext,
// prefix and counter.
func FuzzSealCTR(f *testing.F) {
	f.Add(make([]byte, 200), make([]byte, 57), uint32(0))
	f.Add(make([]byte, 63), []byte{}, uint32(0xfffffffe))
	f.Add(make([]byte, 1500), make([]byte, 64), uint32(7))
	var key [16]byte
	key[0] = 1
	macKey := []byte("fuzz mac key")
	k := New(macKey)
	f.Fuzz(func(t *testing.T, pt, prefix []byte, ctr0 uint32) {
		c := newStitch(t, &key)
		var iv [16]byte
		iv[0] = 9
		binary.BigEndian.PutUint32(iv[12:], ctr0)
		wantCT, wantMAC := refSealCTR(&key, macKey, &iv, pt, prefix)
		ct := make([]byte, len(pt))
		var mac [Size]byte
		k.SealCTR(&mac, c, &iv, ct, pt, prefix)
		if !bytes.Equal(ct, wantCT) || !bytes.Equal(mac[:], wantMAC) {
			t.Fatalf("len %d prefix %d: ciphertext or MAC differs", len(pt), len(prefix))
		}
	})
}
