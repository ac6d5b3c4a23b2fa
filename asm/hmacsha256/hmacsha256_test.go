package hmacsha256

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/moqsframe/moqsframe/internal/impl"
)

// forEachImpl runs f once per block function this CPU has: the base
// (generic) and the assembly alternatives.
func forEachImpl(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	names := impl.Available("hmacsha256")
	if len(names) == 0 {
		t.Fatal("no implementation registered")
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if !impl.Select("hmacsha256", name) {
				t.Fatalf("cannot select %s", name)
			}
			defer impl.Reset("hmacsha256")
			f(t)
		})
	}
}

type katVector struct {
	msg, md []byte
}

// readRSP reads a NIST CAVP SHAVS response file (byte-oriented): Len in
// bits, Msg and MD in hex; a zero Len has Msg = 00, meaning empty.
func readRSP(t *testing.T, name string) []katVector {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []katVector
	var cur katVector
	bits := -1
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " = ")
		if !ok {
			continue
		}
		switch k {
		case "Len":
			if bits, err = strconv.Atoi(v); err != nil {
				t.Fatal(err)
			}
		case "Msg":
			if cur.msg, err = hex.DecodeString(v); err != nil {
				t.Fatal(err)
			}
			cur.msg = cur.msg[:bits/8]
		case "MD":
			if cur.md, err = hex.DecodeString(v); err != nil {
				t.Fatal(err)
			}
			vs = append(vs, cur)
			cur = katVector{}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

// TestSHA256NIST runs the NIST CAVP SHA-256 byte vectors (CAVS 11.0):
// every ShortMsg length 0..64 bytes (the padding boundaries 55/56 and
// 63/64 included) and an excerpt of LongMsg, each hashed whole and split in
// two at every point, plus the FIPS 180-2 examples.
func TestSHA256NIST(t *testing.T) {
	vs := readRSP(t, "testdata/SHA256ShortMsg.rsp")
	if len(vs) != 65 {
		t.Fatalf("ShortMsg: %d vectors, want 65", len(vs))
	}
	long := readRSP(t, "testdata/SHA256LongMsg-excerpt.rsp")
	if len(long) != 4 {
		t.Fatalf("LongMsg excerpt: %d vectors, want 4", len(long))
	}
	vs = append(vs, long...)
	for _, x := range []struct{ msg, md string }{
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
		{strings.Repeat("a", 1000000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
	} {
		md, _ := hex.DecodeString(x.md)
		vs = append(vs, katVector{[]byte(x.msg), md})
	}
	forEachImpl(t, func(t *testing.T) {
		for _, v := range vs {
			if got := sum256(v.msg); !bytes.Equal(got[:], v.md) {
				t.Fatalf("len %d: got %x, want %x", len(v.msg), got, v.md)
			}
			if len(v.msg) > 10000 {
				continue
			}
			for i := 0; i <= len(v.msg); i++ {
				if got := sum256(v.msg[:i], nil, v.msg[i:]); !bytes.Equal(got[:], v.md) {
					t.Fatalf("len %d split at %d: got %x, want %x", len(v.msg), i, got, v.md)
				}
			}
		}
	})
}

// TestHMACRFC4231 runs the HMAC-SHA-256 test cases of RFC 4231 §4.
func TestHMACRFC4231(t *testing.T) {
	rep := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	seq := make([]byte, 25)
	for i := range seq {
		seq[i] = byte(i + 1)
	}
	for i, v := range []struct {
		key, data []byte
		mac       string // truncated in case 5
	}{
		{rep(0x0b, 20), []byte("Hi There"), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{[]byte("Jefe"), []byte("what do ya want for nothing?"), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{rep(0xaa, 20), rep(0xdd, 50), "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
		{seq, rep(0xcd, 50), "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
		{rep(0x0c, 20), []byte("Test With Truncation"), "a3b6167473100ee06e0c796c2955552b"},
		{rep(0xaa, 131), []byte("Test Using Larger Than Block-Size Key - Hash Key First"), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
		{rep(0xaa, 131), []byte("This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."), "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
	} {
		want, _ := hex.DecodeString(v.mac)
		forEachImpl(t, func(t *testing.T) {
			var got [Size]byte
			New(v.key).Sum(&got, v.data)
			if !bytes.Equal(got[:len(want)], want) {
				t.Fatalf("test case %d: got %x, want %x", i+1, got[:len(want)], want)
			}
		})
	}
}

// TestDifferential compares Sum with crypto/hmac and sum256 with
// crypto/sha256 for every message length 0..1100, the message split into
// three parts (as SFrame's prefix, AAD and ciphertext) at random points, on
// every block function, with keys of 0, 32, 64 and 65+ bytes.
func TestDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	msg := make([]byte, 1100)
	for i := range msg {
		msg[i] = byte(rng.Uint32())
	}
	keys := [][]byte{nil, msg[:32], msg[100:164], msg[200:300]}
	forEachImpl(t, func(t *testing.T) {
		for _, key := range keys {
			k := New(key)
			ref := hmac.New(sha256.New, key)
			for n := 0; n <= len(msg); n++ {
				m := msg[:n]
				ref.Reset()
				ref.Write(m)
				want := ref.Sum(nil)
				i := rng.IntN(n + 1)
				j := i + rng.IntN(n-i+1)
				var got [Size]byte
				k.Sum(&got, m[:i], m[i:j], m[j:])
				if !bytes.Equal(got[:], want) {
					t.Fatalf("key %d B, len %d split %d/%d: got %x, want %x", len(key), n, i, j, got, want)
				}
				if s, w := sum256(m[:i], m[i:j], m[j:]), sha256.Sum256(m); s != w {
					t.Fatalf("sha256 len %d split %d/%d: got %x, want %x", n, i, j, s, w)
				}
			}
		}
	})
}

// FuzzHMAC compares Sum with crypto/hmac for any key, message and split.
func FuzzHMAC(f *testing.F) {
	f.Add([]byte("key"), []byte("message"), uint16(3), uint16(5))
	f.Add(make([]byte, 65), make([]byte, 200), uint16(55), uint16(64))
	f.Add([]byte{}, make([]byte, 63), uint16(0), uint16(63))
	f.Fuzz(func(t *testing.T, key, msg []byte, a, b uint16) {
		i := int(a) % (len(msg) + 1)
		j := i + int(b)%(len(msg)-i+1)
		ref := hmac.New(sha256.New, key)
		ref.Write(msg)
		want := ref.Sum(nil)
		var got [Size]byte
		New(key).Sum(&got, msg[:i], msg[i:j], msg[j:])
		if !bytes.Equal(got[:], want) {
			t.Fatalf("got %x, want %x", got, want)
		}
	})
}

// TestSumAllocs asserts that Sum allocates nothing.
func TestSumAllocs(t *testing.T) {
	k := New([]byte("key"))
	hdr, aad, body := make([]byte, 36), make([]byte, 20), make([]byte, 1200)
	var sum [Size]byte
	forEachImpl(t, func(t *testing.T) {
		if n := testing.AllocsPerRun(100, func() { k.Sum(&sum, hdr, aad, body) }); n != 0 {
			t.Fatalf("Sum: %v allocations, want 0", n)
		}
	})
}

func ExampleKey_Sum() {
	k := New([]byte("Jefe"))
	var mac [Size]byte
	k.Sum(&mac, []byte("what do ya want "), []byte("for nothing?"))
	fmt.Printf("%x\n", mac)
	// Output: 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843
}
