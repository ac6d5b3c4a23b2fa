//go:build amd64 && !purego

package aesgcm

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"

	"github.com/klauspost/cpuid/v2"

	"github.com/moqsframe/moqsframe/internal/impl"
)

// gcmKey is the precomputed per-key state of the assembly kernels. Its
// layout is hard-coded in _asm/main.go (checked by TestKeyLayout).
type gcmKey struct {
	nr   uint64        // 10 or 14
	_    uint64        // padding
	rk   [15 * 16]byte // round keys
	rk2  [15 * 32]byte // round keys duplicated in both halves (ymm)
	htab [32 * 16]byte // H^16..H^1 (times x, byte-swapped), 256 zero bytes
	hkar [16 * 16]byte // for htab[i]: lo^hi in both 8-byte halves (Karatsuba middle products, avx2 batches)
}

//go:noescape
func initKeyAsm(k *gcmKey, key []byte)

// Single-message kernels (arguments passed directly; cheapest for one call).

//go:noescape
func sealAVX512(k *gcmKey, dst, src, aad []byte, nonce *byte, tag *byte)

//go:noescape
func openAVX512(k *gcmKey, dst, src, aad []byte, nonce *byte, tag *byte)

//go:noescape
func sealAVX2(k *gcmKey, dst, src, aad []byte, nonce *byte, tag *byte)

//go:noescape
func openAVX2(k *gcmKey, dst, src, aad []byte, nonce *byte, tag *byte)

// Batch kernels: loop over count descriptors in assembly.

//go:noescape
func sealBatchAVX512(k *gcmKey, d *batchDesc, count int)

//go:noescape
func openBatchAVX512(k *gcmKey, d *batchDesc, count int)

//go:noescape
func sealBatchAVX2(k *gcmKey, d *batchDesc, count int)

// openVerifyBatchAVX2 also checks the tags: it compares each computed tag
// with the received one (16 bytes at in+n) in constant time and writes 1
// (equal) or 0 to the byte d.tag points to, so that Go neither sets up a
// tag buffer per message nor compares them.
//
//go:noescape
func openVerifyBatchAVX2(k *gcmKey, d *batchDesc, count int)

// batchChunk is how many messages are described (on the stack) per
// assembly call.
const batchChunk = 16

const (
	implAVX512 = iota
	implAVX2
	implGeneric
)

var (
	hasAVX512 = cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512BW, cpuid.AVX512VL,
		cpuid.VAES, cpuid.VPCLMULQDQ, cpuid.AESNI, cpuid.CLMUL, cpuid.BMI2, cpuid.AVX2)
	hasAVX2 = cpuid.CPU.Supports(cpuid.AVX2, cpuid.VAES, cpuid.VPCLMULQDQ,
		cpuid.AESNI, cpuid.CLMUL, cpuid.BMI2)
)

// useAVX512 and useAVX2 are the switches tests and benchmarks flip through
// internal/impl; they start as what the CPU supports. They are atomics so
// that flipping them is never a data race; every call loads them once (path)
// so one operation runs on one path throughout.
var useAVX512, useAVX2 atomic.Bool

func init() {
	useAVX512.Store(hasAVX512)
	useAVX2.Store(hasAVX2)
	impl.Register("aesgcm", "avx512", &useAVX512)
	impl.Register("aesgcm", "avx2", &useAVX2)
}

// path returns the implementation to use: the first enabled, fastest first.
func path() int {
	switch {
	case useAVX512.Load():
		return implAVX512
	case useAVX2.Load():
		return implAVX2
	}
	return implGeneric
}

func newKey(key []byte) *gcmKey {
	if !hasAVX512 && !hasAVX2 {
		return nil
	}
	k := new(gcmKey)
	initKeyAsm(k, key)
	for i := range 16 {
		h := k.htab[16*i:]
		x := binary.LittleEndian.Uint64(h) ^ binary.LittleEndian.Uint64(h[8:])
		binary.LittleEndian.PutUint64(k.hkar[16*i:], x)
		binary.LittleEndian.PutUint64(k.hkar[16*i+8:], x)
	}
	return k
}

func (a *AEAD) seal(out, nonce, plaintext, aad []byte) {
	a.sealPath(path(), out, nonce, plaintext, aad)
}

func (a *AEAD) sealPath(p int, out, nonce, plaintext, aad []byte) {
	if p == implGeneric {
		a.sealGeneric(out, nonce, plaintext, aad)
		return
	}
	n := len(plaintext)
	if p == implAVX512 {
		sealAVX512(a.k, out[:n], plaintext, aad, unsafe.SliceData(nonce), &out[n])
	} else {
		sealAVX2(a.k, out[:n], plaintext, aad, unsafe.SliceData(nonce), &out[n])
	}
}

func (a *AEAD) open(out, nonce, ciphertext, aad []byte) bool {
	p := path()
	if p == implGeneric {
		return a.openGeneric(out, nonce, ciphertext, aad)
	}
	n := len(ciphertext) - TagSize
	var tag [TagSize]byte
	if p == implAVX512 {
		openAVX512(a.k, out[:n], ciphertext[:n], aad, unsafe.SliceData(nonce), &tag[0])
	} else {
		openAVX2(a.k, out[:n], ciphertext[:n], aad, unsafe.SliceData(nonce), &tag[0])
	}
	return verifyTag(out, &tag, ciphertext[n:])
}

func (a *AEAD) sealBatch(msgs []Message) {
	p := path()
	if p == implGeneric {
		a.sealBatchGeneric(msgs)
		return
	}
	if len(msgs) == 1 {
		m := &msgs[0]
		a.sealPath(p, m.Out, m.Nonce, m.In, m.AAD)
		return
	}
	var ds [batchChunk]batchDesc
	for len(msgs) > 0 {
		c := min(len(msgs), batchChunk)
		for i := range c {
			m := &msgs[i]
			n := len(m.In)
			// Field by field: 8-byte stores that the kernel's 8-byte
			// loads can forward from (a composite literal is copied
			// with 16-byte moves, which measured ~25 ns slower).
			ds[i].out = unsafe.SliceData(m.Out)
			ds[i].in = unsafe.SliceData(m.In)
			ds[i].n = n
			ds[i].aad = unsafe.SliceData(m.AAD)
			ds[i].aadLen = len(m.AAD)
			ds[i].nonce = unsafe.SliceData(m.Nonce)
			ds[i].tag = &m.Out[n]
		}
		runSeal(p, a.k, &ds[0], c)
		msgs = msgs[c:]
	}
}

func (a *AEAD) sealList(d []batchDesc) {
	p := path()
	if p == implGeneric {
		a.sealDescsGeneric(d)
		return
	}
	runSeal(p, a.k, &d[0], len(d))
}

func (a *AEAD) openList(l *OpenList) (failed int) {
	p := path()
	if p == implGeneric {
		return a.openDescsGeneric(l)
	}
	// Tag pointers are set now: l.tags and l.ok may have moved since Add.
	if p == implAVX2 {
		for i := range l.d {
			l.d[i].tag = (*byte)(unsafe.Pointer(&l.ok[i]))
		}
		openVerifyBatchAVX2(a.k, &l.d[0], len(l.d))
		for i, ok := range l.ok {
			if !ok {
				d := &l.d[i]
				clear(unsafe.Slice(d.out, d.n))
				failed++
			}
		}
		return failed
	}
	for i := range l.d {
		l.d[i].tag = &l.tags[i][0]
	}
	openBatchAVX512(a.k, &l.d[0], len(l.d))
	for i := range l.d {
		d := &l.d[i]
		l.ok[i] = tagEqual(&l.tags[i], d.received())
		if !l.ok[i] {
			clear(unsafe.Slice(d.out, d.n))
			failed++
		}
	}
	return failed
}

func (a *AEAD) openBatch(msgs []Message) int {
	p := path()
	if p == implGeneric {
		return a.openBatchWith(msgs, a.openStd)
	}
	failed := 0
	var ds [batchChunk]batchDesc
	var tags [batchChunk][TagSize]byte // avx512: computed tags
	var oks [batchChunk]bool           // avx2: results of the kernel's checks
	var idx [batchChunk]int
	for len(msgs) > 0 {
		// Describe up to batchChunk openable messages.
		c, used := 0, 0
		for used < len(msgs) && c < batchChunk {
			m := &msgs[used]
			if len(m.In) < TagSize || uint64(len(m.In)) > maxPlaintext+TagSize {
				clear(m.Out)
				m.Err = ErrOpen
				failed++
				used++
				continue
			}
			ds[c].out = unsafe.SliceData(m.Out)
			ds[c].in = unsafe.SliceData(m.In)
			ds[c].n = len(m.In) - TagSize
			ds[c].aad = unsafe.SliceData(m.AAD)
			ds[c].aadLen = len(m.AAD)
			ds[c].nonce = unsafe.SliceData(m.Nonce)
			if p == implAVX2 {
				ds[c].tag = (*byte)(unsafe.Pointer(&oks[c]))
			} else {
				ds[c].tag = &tags[c][0]
			}
			idx[c] = used
			c++
			used++
		}
		if c > 0 {
			if p == implAVX2 {
				openVerifyBatchAVX2(a.k, &ds[0], c)
			} else {
				openBatchAVX512(a.k, &ds[0], c)
			}
		}
		for i := range c {
			m := &msgs[idx[i]]
			ok := oks[i]
			if p != implAVX2 {
				ok = verifyTag(m.Out, &tags[i], m.In[len(m.In)-TagSize:])
			} else if !ok {
				clear(m.Out)
			}
			if ok {
				m.Err = nil
			} else {
				m.Err = ErrOpen
				failed++
			}
		}
		msgs = msgs[used:]
	}
	return failed
}

// runSeal calls the selected kernel directly (a call through a
// func value would lose //go:noescape and make the descriptors escape).
func runSeal(p int, k *gcmKey, d *batchDesc, count int) {
	if p == implAVX512 {
		sealBatchAVX512(k, d, count)
	} else {
		sealBatchAVX2(k, d, count)
	}
}

//go:noescape
func ctrAVX512(k *gcmKey, dst, src []byte, iv *[16]byte)

//go:noescape
func ctrAVX2(k *gcmKey, dst, src []byte, iv *[16]byte)

// xorKeyStream uses the zmm or ymm VAES kernel for the selected
// implementation and crypto/aes for "generic".
func (c *CTR) xorKeyStream(dst, src []byte, iv *[16]byte) {
	switch path() {
	case implAVX512:
		ctrAVX512(c.k, dst, src, iv)
	case implAVX2:
		ctrAVX2(c.k, dst, src, iv)
	default:
		c.xorKeyStreamGeneric(dst, src, iv)
	}
}
