package aesgcm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// refCTR is the RFC 9605 keystream: block i is AES(iv with its last 4
// bytes = ctr0+i mod 2^32).
func refCTR(t testing.TB, key []byte, iv [16]byte, src []byte) []byte {
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(src))
	ctr := binary.BigEndian.Uint32(iv[12:])
	var ks [16]byte
	for i := 0; i < len(src); i += 16 {
		binary.BigEndian.PutUint32(iv[12:], ctr)
		b.Encrypt(ks[:], iv[:])
		ctr++
		for j := i; j < len(src) && j < i+16; j++ {
			out[j] = src[j] ^ ks[j-i]
		}
	}
	return out
}

func TestCTR(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, ks := range keySizes {
			r := rand.New(rand.NewPCG(7, uint64(ks)))
			key := randBytes(r, ks)
			c, err := NewCTR(key)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := aes.NewCipher(key)
			lengths := []int{}
			for n := 0; n <= 1024; n++ {
				lengths = append(lengths, n)
			}
			for i := 0; i < 50; i++ {
				lengths = append(lengths, r.IntN(64<<10+1))
			}
			for _, n := range lengths {
				var iv [16]byte
				copy(iv[:12], randBytes(r, 12))
				switch r.IntN(3) {
				case 0: // RFC 9605: nonce || 0
				case 1: // near the 32-bit wrap
					binary.BigEndian.PutUint32(iv[12:], 0xffffffff-uint32(r.IntN(20)))
				default:
					binary.BigEndian.PutUint32(iv[12:], r.Uint32())
				}
				src := randBytes(r, n)
				want := refCTR(t, key, iv, src)
				if binary.BigEndian.Uint32(iv[12:]) < 0xffff0000 {
					// Without wrap, crypto/cipher's 128-bit counter agrees.
					std := make([]byte, n)
					cipher.NewCTR(b, iv[:]).XORKeyStream(std, src)
					if !bytes.Equal(std, want) {
						t.Fatal("reference disagrees with crypto/cipher")
					}
				}
				off := r.IntN(16)
				inBuf := make([]byte, n+16)
				in := inBuf[off : off+n]
				copy(in, src)
				dst := make([]byte, n+17)[1:]
				ivCopy := iv
				c.XORKeyStream(dst, in, &iv)
				if iv != ivCopy {
					t.Fatal("iv modified")
				}
				if !bytes.Equal(dst[:n], want) {
					t.Fatalf("XORKeyStream len=%d ctr=%08x mismatch", n, binary.BigEndian.Uint32(iv[12:]))
				}
				if !bytes.Equal(dst[n:], make([]byte, len(dst)-n)) {
					t.Fatalf("XORKeyStream wrote past len(src)")
				}
				c.XORKeyStream(in, in, &iv) // in place
				if !bytes.Equal(in, want) {
					t.Fatalf("in-place XORKeyStream len=%d mismatch", n)
				}
			}
		}
	})
}

func TestCTRAllocs(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		c, _ := NewCTR(make([]byte, 16))
		buf := make([]byte, 1200)
		var iv [16]byte
		if n := testing.AllocsPerRun(100, func() { c.XORKeyStream(buf, buf, &iv) }); n != 0 {
			t.Errorf("XORKeyStream allocs = %v", n)
		}
	})
}

func TestCTRPanics(t *testing.T) {
	c, _ := NewCTR(make([]byte, 32))
	var iv [16]byte
	for _, f := range []func(){
		func() { c.XORKeyStream(make([]byte, 3), make([]byte, 4), &iv) },
		func() { b := make([]byte, 40); c.XORKeyStream(b[1:], b[:32], &iv) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		}()
	}
	if _, err := NewCTR(make([]byte, 24)); err == nil {
		t.Error("NewCTR accepted a 24-byte key")
	}
}

func BenchmarkCTR(b *testing.B) {
	for _, impl := range benchImpls() {
		for _, size := range []int{160, 1200, 16384} {
			b.Run(impl+"/AES-128/"+itoa(size), func(b *testing.B) {
				key := make([]byte, 16)
				buf := make([]byte, size)
				var iv [16]byte
				b.SetBytes(int64(size))
				b.ReportAllocs()
				if impl == "stdlib" {
					blk, _ := aes.NewCipher(key)
					for b.Loop() {
						cipher.NewCTR(blk, iv[:]).XORKeyStream(buf, buf)
					}
					return
				}
				restore, _ := selectImpl(impl)
				defer restore()
				c, _ := NewCTR(key)
				for b.Loop() {
					c.XORKeyStream(buf, buf, &iv)
				}
			})
		}
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
