package sframe

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

var edgeValues = []uint64{0, 1, 7, 8, 255, 256, 0xffff, 0x10000, 1<<32 - 1, 1 << 32, 1<<56 - 1, 1 << 56, math.MaxUint64 - 1, math.MaxUint64}

func TestHeaderRoundTrip(t *testing.T) {
	for _, kid := range edgeValues {
		for _, ctr := range edgeValues {
			b := AppendHeader([]byte{0xaa}, kid, ctr)[1:]
			if len(b) != HeaderLen(kid, ctr) {
				t.Fatalf("(%d,%d): len %d, HeaderLen %d", kid, ctr, len(b), HeaderLen(kid, ctr))
			}
			h, n, err := ParseHeader(append(b, 0x55)) // trailing payload is not part of the header
			if err != nil || h.KID != kid || h.CTR != ctr || n != len(b) {
				t.Fatalf("(%d,%d): parsed %+v n=%d err=%v from %x", kid, ctr, h, n, err, b)
			}
		}
	}
}

// refHeader encodes a header byte by byte, straight from RFC 9605 §4.3.
func refHeader(kid, ctr uint64) []byte {
	minimal := func(v uint64) []byte {
		var b []byte
		for ; v > 0; v >>= 8 {
			b = append([]byte{byte(v)}, b...)
		}
		return b
	}
	var config byte
	var rest []byte
	if kid < 8 {
		config = byte(kid) << 4
	} else {
		k := minimal(kid)
		config = 0x80 | byte(len(k)-1)<<4
		rest = append(rest, k...)
	}
	if ctr < 8 {
		config |= byte(ctr)
	} else {
		c := minimal(ctr)
		config |= 0x08 | byte(len(c)-1)
		rest = append(rest, c...)
	}
	return append([]byte{config}, rest...)
}

// TestPutHeader: the header lands exactly, whether written with one wide
// store (short headers in roomy buffers) or byte by byte, and the bytes
// after it (an in-place plaintext, say) are left alone.
func TestPutHeader(t *testing.T) {
	for _, kid := range edgeValues {
		for _, ctr := range edgeValues {
			want := refHeader(kid, ctr)
			for room := range 10 {
				b := make([]byte, len(want)+room)
				for i := range b {
					b[i] = byte(0xa0 + i)
				}
				tail := bytes.Clone(b[len(want):])
				if n := putHeader(b, kid, ctr); n != len(want) || !bytes.Equal(b[:n], want) || !bytes.Equal(b[n:], tail) {
					t.Fatalf("(%#x,%#x) in %d bytes: n=%d %x, want %x then %x", kid, ctr, len(b), n, b, want, tail)
				}
			}
			if got := AppendHeader(nil, kid, ctr); !bytes.Equal(got, want) {
				t.Fatalf("AppendHeader(%#x,%#x) = %x, want %x", kid, ctr, got, want)
			}
		}
	}
}

func TestParseHeaderRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"kid truncated", []byte{0x80}},
		{"ctr truncated", []byte{0x09, 0x01}},
		{"kid 7 extended", []byte{0x80, 0x07}},
		{"ctr 0 extended", []byte{0x08, 0x00}},
		{"kid leading zero", []byte{0x90, 0x00, 0xff}},
		{"ctr leading zero", []byte{0x0f, 0, 0, 0, 0, 0, 0, 0, 1}},
		{"both long, ctr short", []byte{0xff, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3}},
	} {
		if _, _, err := ParseHeader(tc.in); !errors.Is(err, ErrMalformedHeader) {
			t.Errorf("%s: %x: err = %v, want ErrMalformedHeader", tc.name, tc.in, err)
		}
	}
}

// Every byte string either fails to parse or is the unique encoding of what
// it parses to: checked exhaustively over all 1- and 2-byte inputs.
func TestParseHeaderCanonical(t *testing.T) {
	for i := range 1 << 16 {
		for _, in := range [][]byte{{byte(i)}, {byte(i >> 8), byte(i)}} {
			h, n, err := ParseHeader(in)
			if err != nil {
				continue
			}
			if enc := AppendHeader(nil, h.KID, h.CTR); !bytes.Equal(enc, in[:n]) {
				t.Fatalf("%x parses to %+v which encodes as %x", in, h, enc)
			}
		}
	}
}

// TestParseHeaderFastPath: for every config byte, with the bytes after it
// drawn from the edges of each length (leading zero bytes, all ones) and at
// random, ParseHeader on 8 bytes or more (one 8-byte load) and the
// byte-by-byte parser return the same header, length and verdict.
func TestParseHeaderFastPath(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	tails := [][]byte{make([]byte, 16), bytes.Repeat([]byte{0xff}, 16), append([]byte{0}, bytes.Repeat([]byte{0xff}, 15)...),
		append([]byte{1}, make([]byte, 15)...)}
	for range 64 {
		b := make([]byte, 16)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		tails = append(tails, b)
	}
	for c := range 256 {
		for _, tail := range tails {
			for l := 8; l <= 17; l++ {
				in := append([]byte{byte(c)}, tail[:l-1]...)
				h, n, err := ParseHeader(in)
				sh, sn, serr := parseHeaderSlow(in)
				if h != sh || n != sn || (err == nil) != (serr == nil) {
					t.Fatalf("%x: ParseHeader %+v %d %v, byte by byte %+v %d %v", in, h, n, err, sh, sn, serr)
				}
			}
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	for _, kid := range edgeValues {
		f.Add(AppendHeader(nil, kid, kid/3))
	}
	f.Add([]byte{})
	f.Add([]byte{0xff})
	f.Add(append(AppendHeader(nil, 300, 1<<20), make([]byte, 16)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		h, n, err := ParseHeader(in)
		// The 8-byte fast path and the byte-by-byte parser agree.
		if sh, sn, serr := parseHeaderSlow(in); sh != h || sn != n || (serr == nil) != (err == nil) {
			t.Fatalf("%x: ParseHeader %+v %d %v, byte by byte %+v %d %v", in, h, n, err, sh, sn, serr)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformedHeader) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if n < 1 || n > MaxHeaderLen || n > len(in) {
			t.Fatalf("length %d out of range for input %d", n, len(in))
		}
		if enc := AppendHeader(nil, h.KID, h.CTR); !bytes.Equal(enc, in[:n]) {
			t.Fatalf("%x parses to %+v which encodes as %x", in, h, enc)
		}
	})
}
