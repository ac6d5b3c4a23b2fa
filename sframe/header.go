package sframe

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/moqsframe/moqsframe/internal/alias"
)

// MaxHeaderLen is the longest SFrame header: a config byte, an 8-byte KID and
// an 8-byte CTR.
const MaxHeaderLen = 17

// Header is a decoded SFrame header (RFC 9605 §4.3).
type Header struct {
	KID uint64
	CTR uint64
}

// valueLen returns the bytes of v's minimal big-endian encoding beyond the
// config byte: 0 when v fits in the config byte's 3 bits.
func valueLen(v uint64) int {
	if v < 8 {
		return 0
	}
	return (bits.Len64(v) + 7) / 8
}

// HeaderLen returns the encoded length of the header for kid and ctr.
func HeaderLen(kid, ctr uint64) int { return 1 + valueLen(kid) + valueLen(ctr) }

// AppendHeader appends the minimal encoding of the header for kid and ctr to
// dst and returns the extended slice.
func AppendHeader(dst []byte, kid, ctr uint64) []byte {
	ret, out := alias.SliceForAppend(dst, HeaderLen(kid, ctr))
	putHeader(out, kid, ctr)
	return ret
}

// putHeader writes the header for kid and ctr at the start of b, which must
// hold HeaderLen(kid, ctr) bytes, and returns its length; b[n:] is left as
// it was. It runs once or twice per object, so the usual header of at most
// 8 bytes is written with one 8-byte store.
func putHeader(b []byte, kid, ctr uint64) int {
	kl, cl := valueLen(kid), valueLen(ctr)
	n := 1 + kl + cl
	var config byte
	if kl == 0 {
		config = byte(kid) << 4
	} else {
		config = 0x80 | byte(kl-1)<<4
	}
	if cl == 0 {
		config |= byte(ctr)
	} else {
		config |= 0x08 | byte(cl-1)
	}
	if n <= 8 && len(b) >= 8 {
		w := uint64(config) << 56
		if kl > 0 {
			w |= kid << (56 - 8*kl)
		}
		if cl > 0 {
			w |= ctr << (56 - 8*(kl+cl))
		}
		keep := ^uint64(0) >> (8 * n) // the bytes after the header
		binary.BigEndian.PutUint64(b, w|binary.BigEndian.Uint64(b)&keep)
		return n
	}
	_ = b[n-1]
	b[0] = config
	for i := kl; i > 0; i-- {
		b[i] = byte(kid)
		kid >>= 8
	}
	for i := n - 1; i > kl; i-- {
		b[i] = byte(ctr)
		ctr >>= 8
	}
	return n
}

// ParseHeader decodes the SFrame header at the start of b. It returns the
// header and its encoded length. It rejects truncated headers and any
// encoding that is not minimal (a value below 8 in extended form, or a value
// with leading zero bytes), so every header has exactly one encoding.
func ParseHeader(b []byte) (h Header, n int, err error) {
	if len(b) >= 8 {
		if h, n, ok := parseHeader8(binary.BigEndian.Uint64(b)); ok {
			return h, n, nil
		}
	}
	return parseHeaderSlow(b)
}

// parseHeader8 decodes a header of at most 8 bytes from the first 8 bytes
// of its input, w (big-endian): every header a ciphertext of 8 bytes or more
// starts with, unless KID and CTR take 8 bytes or more together. It runs
// once per object. ok is false for a longer header or a non-minimal
// encoding, which parseHeaderSlow then decodes or rejects with a reason.
func parseHeader8(w uint64) (h Header, n int, ok bool) {
	config := byte(w >> 56)
	kf, cf := config>>4, config&0x0f
	kl, cl := 0, 0
	if kf&0x08 != 0 {
		kl = int(kf&0x07) + 1
	}
	if cf&0x08 != 0 {
		cl = int(cf&0x07) + 1
	}
	n = 1 + kl + cl
	if n > 8 {
		return Header{}, 0, false
	}
	h.KID, h.CTR = uint64(kf), uint64(cf)
	if kl > 0 {
		h.KID = w << 8 >> (64 - 8*kl)
		if valueLen(h.KID) != kl {
			return Header{}, 0, false
		}
	}
	if cl > 0 {
		h.CTR = w << (8 * (1 + kl)) >> (64 - 8*cl)
		if valueLen(h.CTR) != cl {
			return Header{}, 0, false
		}
	}
	return h, n, true
}

// parseHeaderSlow is ParseHeader byte by byte, with the reason for a
// rejection.
func parseHeaderSlow(b []byte) (h Header, n int, err error) {
	if len(b) == 0 {
		return Header{}, 0, fmt.Errorf("%w: empty input", ErrMalformedHeader)
	}
	config := b[0]
	n = 1
	if h.KID, n, err = parseValue(b, n, config>>4, "KID"); err != nil {
		return Header{}, 0, err
	}
	if h.CTR, n, err = parseValue(b, n, config&0x0f, "CTR"); err != nil {
		return Header{}, 0, err
	}
	return h, n, nil
}

// parseValue decodes one 4-bit field of the config byte (flag and 3 bits)
// and the bytes it announces, starting at b[off].
func parseValue(b []byte, off int, field byte, name string) (uint64, int, error) {
	if field&0x08 == 0 {
		return uint64(field & 0x07), off, nil
	}
	l := int(field&0x07) + 1
	if len(b)-off < l {
		return 0, 0, fmt.Errorf("%w: %s needs %d bytes, %d left", ErrMalformedHeader, name, l, len(b)-off)
	}
	var v uint64
	for _, c := range b[off : off+l] {
		v = v<<8 | uint64(c)
	}
	if valueLen(v) != l {
		return 0, 0, fmt.Errorf("%w: %s %d not minimally encoded in %d bytes", ErrMalformedHeader, name, v, l)
	}
	return v, off + l, nil
}
