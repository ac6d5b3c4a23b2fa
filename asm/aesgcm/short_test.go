package aesgcm

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// shortAADLens are AAD lengths around the block (16 B), vector (32 B) and
// short-path (64 B) limits of the kernels; 36 B is what package sframe
// passes for a typical MoQ object.
var shortAADLens = []int{0, 1, 8, 15, 16, 17, 31, 32, 33, 36, 47, 48, 63, 64, 65, 80}

// TestShortPathGrid checks every plaintext length 0..600 against every
// AAD length of shortAADLens (both sides of each kernel's short-message
// limits: data <= 224 B, AAD <= 64 B, AAD + data + length block <= 16
// blocks; and of the 8-block main loops), sealing and opening, in place
// and not, against crypto/cipher, with tampered tag, ciphertext and AAD
// refused.
func TestShortPathGrid(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, ks := range keySizes {
			r := rand.New(rand.NewPCG(20, uint64(ks)))
			key := randBytes(r, ks)
			a, _ := New(key)
			ref := stdGCM(t, key)
			for n := 0; n <= 600; n++ {
				for i, aadLen := range shortAADLens {
					check(t, a, ref, r, randBytes(r, n), randBytes(r, aadLen), (n+i)%4 == 0)
				}
			}
		}
	})
}

// TestOpenListOneBad opens lists of mixed lengths (all sides of the short
// and long paths, AAD of 0..80 B) in which exactly one object, at every
// position in turn, is tampered with (one bit of its ciphertext, tag or
// AAD): it alone fails, is counted, and has its output zeroed; every other
// object opens to its plaintext.
func TestOpenListOneBad(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, ks := range keySizes {
			r := rand.New(rand.NewPCG(21, uint64(ks)))
			key := randBytes(r, ks)
			a, _ := New(key)
			ref := stdGCM(t, key)
			lens := []int{0, 1, 15, 16, 17, 31, 32, 33, 127, 128, 129, 160, 223, 224, 225, 240, 255, 256, 257, 600, 1200}
			const count = 24
			pts := make([][]byte, count)
			aads := make([][]byte, count)
			nonces := make([][]byte, count)
			cts := make([][]byte, count)
			for i := range count {
				pts[i] = randBytes(r, lens[r.IntN(len(lens))])
				aads[i] = randBytes(r, shortAADLens[r.IntN(len(shortAADLens))])
				nonces[i] = randBytes(r, NonceSize)
				cts[i] = ref.Seal(nil, nonces[i], pts[i], aads[i])
			}
			var l OpenList
			for bad := range count {
				l.Reset()
				outs := make([][]byte, count)
				for i := range count {
					in, aad := bytes.Clone(cts[i]), aads[i]
					if i == bad {
						switch r.IntN(3) {
						case 0:
							in[r.IntN(len(in))] ^= 1 << r.IntN(8)
						case 1:
							in[len(in)-1-r.IntN(TagSize)] ^= 1 << r.IntN(8)
						default:
							aad = append(bytes.Clone(aad), 0)
						}
					}
					if r.IntN(2) == 0 {
						outs[i] = in[:len(in)-TagSize] // in place
					} else {
						outs[i] = make([]byte, len(in)-TagSize)
					}
					l.Add(outs[i], in, nonces[i], aad)
				}
				if failed := a.OpenList(&l); failed != 1 {
					t.Fatalf("bad=%d: %d failed, want 1", bad, failed)
				}
				for i := range count {
					if i == bad {
						if l.OK(i) || !bytes.Equal(outs[i], make([]byte, len(outs[i]))) {
							t.Fatalf("bad=%d (len %d, aad %d): accepted or output not zeroed", bad, len(pts[i]), len(aads[i]))
						}
						continue
					}
					if !l.OK(i) || !bytes.Equal(outs[i], pts[i]) {
						t.Fatalf("bad=%d: object %d (len %d, aad %d) OK=%v, output mismatch", bad, i, len(pts[i]), len(aads[i]), l.OK(i))
					}
				}
			}
		}
	})
}
