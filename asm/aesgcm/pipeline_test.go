package aesgcm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// pipeLens are plaintext lengths on both sides of every limit of the AVX2
// batch kernels' short path (data vectors of 32 B, 224 B, 16 blocks with
// AAD and length block) and of the long path's 8-block loop.
var pipeLens = []int{0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96, 127, 128, 129, 160, 191, 192, 193, 208, 223, 224, 225, 240, 600}

// pipeAADLens are AAD lengths around the same limits (0, odd and even
// block counts, one and two vectors, over 64 B).
var pipeAADLens = []int{0, 8, 16, 17, 33, 36, 48, 64, 65}

type pipeMsg struct {
	pt, aad, nonce, ct []byte
}

func newPipeMsg(r *rand.Rand, ref interface {
	Seal(dst, nonce, pt, aad []byte) []byte
}, n, aadLen int) pipeMsg {
	m := pipeMsg{pt: randBytes(r, n), aad: randBytes(r, aadLen), nonce: randBytes(r, NonceSize)}
	m.ct = ref.Seal(nil, m.nonce, m.pt, m.aad)
	return m
}

// TestListPipelinePairs seals and opens lists in which every ordered pair
// of (length, AAD length) of pipeLens x pipeAADLens follows each other:
// the AVX2 batch kernels hash a short message while the next one's AES
// runs, so each pair is a pair of pipeline stages (short-short,
// short-long, long-short, long-long). Each list is [A, B] (even), and
// [A, B, A'] and [X, A, B] (odd, so the pair sits in both positions of
// the pipeline); outputs are compared with crypto/cipher, in place and
// not. For opens, the first or the second message of the pair is tampered
// with (ciphertext, tag or AAD) in turn: it alone fails, is counted and
// zeroed.
func TestListPipelinePairs(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, ks := range keySizes {
			r := rand.New(rand.NewPCG(31, uint64(ks)))
			key := randBytes(r, ks)
			a, _ := New(key)
			ref := stdGCM(t, key)
			type shape struct{ n, aad int }
			var shapes []shape
			for _, n := range pipeLens {
				for _, al := range pipeAADLens {
					shapes = append(shapes, shape{n, al})
				}
			}
			var sl SealList
			var ol OpenList
			for i, sa := range shapes {
				for j, sb := range shapes {
					if ks == 32 && (i+j)%7 != 0 {
						continue // AES-256 differs only in the rounds: a sample
					}
					A := newPipeMsg(r, ref, sa.n, sa.aad)
					B := newPipeMsg(r, ref, sb.n, sb.aad)
					X := newPipeMsg(r, ref, r.IntN(300), r.IntN(70))
					A2 := newPipeMsg(r, ref, sa.n, sa.aad)
					name := fmt.Sprintf("A=%d/%d B=%d/%d", sa.n, sa.aad, sb.n, sb.aad)
					for _, list := range [][]pipeMsg{{A, B}, {A, B, A2}, {X, A, B}} {
						inPlace := r.IntN(2) == 0
						checkSealList(t, a, &sl, list, inPlace, name)
						bad := -1
						if (i+j)%3 != 0 {
							// Tamper with A or B (indices in list).
							bad = len(list) - 2 + r.IntN(2)
						}
						checkOpenList(t, a, &ol, r, list, bad, inPlace, name)
					}
				}
			}
		}
	})
}

func checkSealList(t *testing.T, a *AEAD, l *SealList, list []pipeMsg, inPlace bool, name string) {
	t.Helper()
	l.Reset()
	outs := make([][]byte, len(list))
	for i, m := range list {
		outs[i] = make([]byte, len(m.pt)+TagSize)
		in := m.pt
		if inPlace {
			copy(outs[i], m.pt)
			in = outs[i][:len(m.pt)]
		}
		l.Add(outs[i], in, m.nonce, m.aad)
	}
	a.SealList(l)
	for i, m := range list {
		if !bytes.Equal(outs[i], m.ct) {
			t.Fatalf("%s: seal list of %d, message %d (len %d, aad %d, in place %v) differs from crypto/cipher",
				name, len(list), i, len(m.pt), len(m.aad), inPlace)
		}
	}
}

func checkOpenList(t *testing.T, a *AEAD, l *OpenList, r *rand.Rand, list []pipeMsg, bad int, inPlace bool, name string) {
	t.Helper()
	l.Reset()
	outs := make([][]byte, len(list))
	for i, m := range list {
		in, aad := bytes.Clone(m.ct), m.aad
		if i == bad {
			switch r.IntN(3) {
			case 0:
				if len(m.pt) > 0 {
					in[r.IntN(len(m.pt))] ^= 1 << r.IntN(8)
					break
				}
				fallthrough
			case 1:
				in[len(in)-1-r.IntN(TagSize)] ^= 1 << r.IntN(8)
			default:
				aad = append(bytes.Clone(aad), byte(r.IntN(256)))
			}
		}
		if inPlace {
			outs[i] = in[:len(m.pt)]
		} else {
			outs[i] = make([]byte, len(m.pt))
		}
		l.Add(outs[i], in, m.nonce, aad)
	}
	want := 0
	if bad >= 0 {
		want = 1
	}
	if failed := a.OpenList(l); failed != want {
		t.Fatalf("%s: open list of %d with bad=%d: %d failed, want %d", name, len(list), bad, failed, want)
	}
	for i, m := range list {
		if i == bad {
			if l.OK(i) || !bytes.Equal(outs[i], make([]byte, len(m.pt))) {
				t.Fatalf("%s: open list of %d: tampered message %d accepted or output not zeroed", name, len(list), i)
			}
			continue
		}
		if !l.OK(i) || !bytes.Equal(outs[i], m.pt) {
			t.Fatalf("%s: open list of %d with bad=%d: message %d (len %d, aad %d) OK=%v, output mismatch",
				name, len(list), bad, i, len(m.pt), len(m.aad), l.OK(i))
		}
	}
}
