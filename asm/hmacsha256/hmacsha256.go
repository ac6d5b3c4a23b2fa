// Package hmacsha256 implements HMAC-SHA256 (RFC 2104, FIPS 180-4) for a
// fixed key, as the SFrame AES-CTR+HMAC suites need it (RFC 9605 §4.5.1):
// the key's inner and outer states are computed once by [New], and [Key.Sum]
// hashes a message given as several parts straight from the caller's
// slices. Only the block that straddles two parts and the final padded block
// are copied, into a buffer on the stack; Sum allocates nothing.
//
// On amd64 CPUs with the SHA extensions the block function is assembly
// (SHA-NI); elsewhere, and under the purego build tag, it is pure Go.
package hmacsha256

//go:generate sh -c "cd _asm && go run . -out ../hmacsha256_amd64.s"

import (
	"encoding/binary"

	"github.com/moqsframe/moqsframe/internal/impl"
)

// Size is the size of an HMAC-SHA256 tag in bytes.
const Size = 32

// BlockSize is SHA-256's block size in bytes.
const BlockSize = 64

// iv is SHA-256's initial hash value (FIPS 180-4 §5.3.3).
var iv = [8]uint32{
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
}

// Key is an HMAC-SHA256 key with its inner and outer hash states: SHA-256
// after the one block key⊕ipad, resp. key⊕opad (RFC 2104 §2). It is
// read-only after New, so one Key may be used by many goroutines at once.
type Key struct {
	inner, outer [8]uint32
}

// New returns the HMAC-SHA256 key for key, which may have any length; a key
// longer than BlockSize is first hashed, as RFC 2104 §2 says.
func New(key []byte) *Key {
	k := new(Key)
	var pad [BlockSize]byte
	if len(key) > BlockSize {
		s := sum256(key)
		copy(pad[:], s[:])
	} else {
		copy(pad[:], key)
	}
	for i := range pad {
		pad[i] ^= 0x36
	}
	k.inner = iv
	block(&k.inner, pad[:])
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	k.outer = iv
	block(&k.outer, pad[:])
	clear(pad[:])
	return k
}

// Sum writes to dst the HMAC-SHA256 of the concatenation of parts (empty
// parts are allowed) under k.
func (k *Key) Sum(dst *[Size]byte, parts ...[]byte) {
	d := digest{h: k.inner, n: BlockSize}
	for _, p := range parts {
		d.write(p)
	}
	d.sum(k, dst)
}

// outerSum writes the HMAC of an inner hash: the outer hash runs over one
// block, the inner hash, padding and the length of key⊕opad || inner hash
// (96 bytes).
func (k *Key) outerSum(dst *[Size]byte, inner *[8]uint32) {
	var b [BlockSize]byte
	for i, v := range inner {
		binary.BigEndian.PutUint32(b[4*i:], v)
	}
	b[Size] = 0x80
	binary.BigEndian.PutUint64(b[BlockSize-8:], (BlockSize+Size)*8)
	h := k.outer
	block(&h, b[:])
	for i, v := range h {
		binary.BigEndian.PutUint32(dst[4*i:], v)
	}
}

// sum256 returns the SHA-256 of the concatenation of parts.
func sum256(parts ...[]byte) [Size]byte {
	d := digest{h: iv}
	for _, p := range parts {
		d.write(p)
	}
	d.finish()
	var out [Size]byte
	for i, v := range d.h {
		binary.BigEndian.PutUint32(out[4*i:], v)
	}
	return out
}

// digest is a SHA-256 in progress. Whole blocks of the input are hashed
// from where they lie; buf holds only the bytes of a block that is not yet
// complete (at most 63), and room for the padding.
type digest struct {
	h   [8]uint32
	buf [2 * BlockSize]byte
	nb  int    // bytes in buf
	n   uint64 // bytes hashed so far, including buf
}

func (d *digest) write(p []byte) {
	d.n += uint64(len(p))
	if d.nb > 0 {
		c := copy(d.buf[d.nb:BlockSize], p)
		d.nb += c
		p = p[c:]
		if d.nb < BlockSize {
			return
		}
		block(&d.h, d.buf[:BlockSize])
		d.nb = 0
	}
	if n := len(p) &^ (BlockSize - 1); n > 0 {
		block(&d.h, p[:n])
		p = p[n:]
	}
	d.nb = copy(d.buf[:], p)
}

// pad appends the padding and the length in bits (FIPS 180-4 §5.1.1) to
// buf and returns the last one or two blocks.
func (d *digest) pad() []byte {
	d.buf[d.nb] = 0x80
	end := BlockSize
	if d.nb >= BlockSize-8 {
		end = 2 * BlockSize
	}
	clear(d.buf[d.nb+1 : end-8])
	binary.BigEndian.PutUint64(d.buf[end-8:], d.n*8)
	return d.buf[:end]
}

// finish hashes the last block(s).
func (d *digest) finish() { block(&d.h, d.pad()) }

// sum finishes d as the inner hash of an HMAC under k and writes the HMAC
// to mac: in one kernel call where there is one.
func (d *digest) sum(k *Key, mac *[Size]byte) {
	p := d.pad()
	if !final(&d.h, p, &k.outer, mac) {
		block(&d.h, p)
		k.outerSum(mac, &d.h)
	}
}

func init() { impl.RegisterBase("hmacsha256", "generic") }
