//go:build amd64 && !purego

package aesgcm

import (
	"testing"
	"unsafe"
)

// TestKeyLayout checks the offsets hard-coded in _asm/main.go.
func TestKeyLayout(t *testing.T) {
	var k gcmKey
	var d batchDesc
	checks := []struct {
		name      string
		got, want uintptr
	}{
		{"gcmKey.nr", unsafe.Offsetof(k.nr), 0},
		{"gcmKey.rk", unsafe.Offsetof(k.rk), 16},
		{"gcmKey.rk2", unsafe.Offsetof(k.rk2), 256},
		{"gcmKey.htab", unsafe.Offsetof(k.htab), 736},
		{"gcmKey.hkar", unsafe.Offsetof(k.hkar), 736 + 512},
		{"sizeof(gcmKey)", unsafe.Sizeof(k), 736 + 512 + 256},
		{"batchDesc.out", unsafe.Offsetof(d.out), 0},
		{"batchDesc.in", unsafe.Offsetof(d.in), 8},
		{"batchDesc.n", unsafe.Offsetof(d.n), 16},
		{"batchDesc.aad", unsafe.Offsetof(d.aad), 24},
		{"batchDesc.aadLen", unsafe.Offsetof(d.aadLen), 32},
		{"batchDesc.nonce", unsafe.Offsetof(d.nonce), 40},
		{"batchDesc.tag", unsafe.Offsetof(d.tag), 48},
		{"sizeof(batchDesc)", unsafe.Sizeof(d), 56},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

// TestHPowers checks the precomputed table against a bitwise GHASH
// multiply: htab[16-i] must be H^i·x in the byte-swapped representation,
// i.e. byteswap(H^i) shifted left by one with reduction.
func TestHPowers(t *testing.T) {
	if !hasAVX512 && !hasAVX2 {
		t.Skip("no assembly")
	}
	key := []byte("0123456789abcdef")
	k := newKey(key)
	var h [16]byte
	copy(h[:], aesEncryptZero(t, key))
	p := h
	for i := 1; i <= 16; i++ {
		want := mulX(bswap(p))
		var got [16]byte
		copy(got[:], k.htab[16*(16-i):])
		if got != want {
			t.Fatalf("htab H^%d = %x, want %x", i, got, want)
		}
		p = gfMul(p, h)
	}
	for i := range 16 {
		for half := range 2 {
			for b := range 8 {
				if got, want := k.hkar[16*i+8*half+b], k.htab[16*i+b]^k.htab[16*i+8+b]; got != want {
					t.Fatalf("hkar[%d] byte %d = %#x, want %#x", i, 8*half+b, got, want)
				}
			}
		}
	}
	for _, b := range k.htab[256:] {
		if b != 0 {
			t.Fatal("htab padding not zero")
		}
	}
}
