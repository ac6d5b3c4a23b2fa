//go:build linux

package aesgcm

import (
	"bytes"
	"math/rand/v2"
	"syscall"
	"testing"
)

// guardedPage returns a page of memory directly followed by an
// inaccessible one: any read or write past its end faults.
func guardedPage(t *testing.T) []byte {
	ps := syscall.Getpagesize()
	mem, err := syscall.Mmap(-1, 0, 2*ps, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	if err := syscall.Mprotect(mem[ps:], syscall.PROT_NONE); err != nil {
		t.Skipf("mprotect: %v", err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	return mem[:ps:ps]
}

// TestGuardPage puts plaintext, ciphertext, output, AAD and nonce at the
// very end of pages followed by an inaccessible page: the AVX2 kernels load
// a partial last vector 32 bytes wide when it stays within its page, and
// must copy it otherwise (the AVX-512 kernels use masked loads). Every
// length 0..300 and every AAD length of shortAADLens, seal and open,
// against crypto/cipher; a fault would crash the test.
func TestGuardPage(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		pin, pout, paad, pnonce := guardedPage(t), guardedPage(t), guardedPage(t), guardedPage(t)
		ps := len(pin)
		end := func(p []byte, n int) []byte { return p[ps-n : ps : ps] }
		for _, ks := range keySizes {
			r := rand.New(rand.NewPCG(22, uint64(ks)))
			key := randBytes(r, ks)
			a, _ := New(key)
			ref := stdGCM(t, key)
			for n := 0; n <= 300; n++ {
				for _, aadLen := range shortAADLens {
					pt, aad := end(pin, n), end(paad, aadLen)
					nonce := end(pnonce, NonceSize)
					plain := randBytes(r, n)
					copy(pt, plain)
					copy(aad, randBytes(r, aadLen))
					copy(nonce, randBytes(r, NonceSize))
					want := ref.Seal(nil, nonce, pt, aad)
					if got := a.Seal(end(pout, n+TagSize)[:0], nonce, pt, aad); !bytes.Equal(got, want) {
						t.Fatalf("Seal(len=%d, aad=%d) at page end mismatch", n, aadLen)
					}
					var sl SealList
					sl.Add(end(pout, n+TagSize), pt, nonce, aad)
					sl.Add(end(pout, n+TagSize), pt, nonce, aad) // a list of two takes the batch kernel
					a.SealList(&sl)
					if !bytes.Equal(end(pout, n+TagSize), want) {
						t.Fatalf("SealList(len=%d, aad=%d) at page end mismatch", n, aadLen)
					}
					ct := end(pin, n+TagSize)
					copy(ct, want)
					got, err := a.Open(end(pout, n)[:0], nonce, ct, aad)
					if err != nil || !bytes.Equal(got, plain) {
						t.Fatalf("Open(len=%d, aad=%d) at page end: %v", n, aadLen, err)
					}
					var ol OpenList
					ol.Add(end(pout, n), ct, nonce, aad)
					ol.Add(ct[:n], ct, nonce, aad) // in place, last
					if a.OpenList(&ol) != 0 || !bytes.Equal(end(pout, n), plain) || !bytes.Equal(ct[:n], plain) {
						t.Fatalf("OpenList(len=%d, aad=%d) at page end failed", n, aadLen)
					}
				}
			}
		}
	})
}
