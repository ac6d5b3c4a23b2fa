package aesgcm

import (
	"crypto/aes"
	"encoding/binary"
	"testing"
)

func aesEncryptZero(t *testing.T, key []byte) []byte {
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 16)
	b.Encrypt(out, make([]byte, 16))
	return out
}

// gfMul multiplies in GF(2^128) with the GCM bit order (SP 800-38D, Alg. 1).
func gfMul(x, y [16]byte) [16]byte {
	var z [16]byte
	v := y
	for i := 0; i < 128; i++ {
		if x[i/8]&(0x80>>(i%8)) != 0 {
			for j := range z {
				z[j] ^= v[j]
			}
		}
		lsb := v[15] & 1
		for j := 15; j > 0; j-- {
			v[j] = v[j]>>1 | v[j-1]<<7
		}
		v[0] >>= 1
		if lsb != 0 {
			v[0] ^= 0xe1
		}
	}
	return z
}

func bswap(x [16]byte) [16]byte {
	for i := 0; i < 8; i++ {
		x[i], x[15-i] = x[15-i], x[i]
	}
	return x
}

// mulX: the 128-bit little-endian integer of x shifted left by one bit,
// reduced with 0xc2000000000000000000000000000001 (as Go's gcmAesInit).
func mulX(x [16]byte) [16]byte {
	lo := binary.LittleEndian.Uint64(x[:8])
	hi := binary.LittleEndian.Uint64(x[8:])
	carry := hi >> 63
	hi = hi<<1 | lo>>63
	lo <<= 1
	if carry != 0 {
		lo ^= 1
		hi ^= 0xc200000000000000
	}
	var out [16]byte
	binary.LittleEndian.PutUint64(out[:8], lo)
	binary.LittleEndian.PutUint64(out[8:], hi)
	return out
}
