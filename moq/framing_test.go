package moq

import (
	"errors"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
)

// feedAll runs the parser over b in chunks of chunk bytes, granting every
// pending object, and returns the number of objects and the first error.
func feedAll(p *frameParser, b []byte, chunk int) (consumed int, err error) {
	if chunk <= 0 {
		chunk = 1
	}
	for consumed < len(b) {
		end := consumed + chunk
		if end > len(b) {
			end = len(b)
		}
		n, ev, ferr := p.feed(b[consumed:end])
		if n < 0 || n > end-consumed {
			panic("feed consumed out of range")
		}
		consumed += n
		if ferr != nil {
			return consumed, ferr
		}
		if ev == evObjectPending {
			p.grant()
		}
	}
	return consumed, nil
}

func TestFrameParserValidStream(t *testing.T) {
	stream := craftedSubgroup(3, 9,
		craftedObject(0, 5, []byte("hello")),
		craftedObject(1, 0, []byte{0x00}), // empty object: status 0
		craftedObject(2, 1, []byte("x")),
	)
	for chunk := 1; chunk <= len(stream); chunk++ {
		p := newFrameParser(1 << 20)
		if _, err := feedAll(p, stream, chunk); err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		if p.Objects != 3 || p.Identifier != 3 || p.GroupID != 9 {
			t.Fatalf("chunk %d: objects=%d alias=%d group=%d", chunk, p.Objects, p.Identifier, p.GroupID)
		}
	}
}

func TestFrameParserRefusesBeforeLengthCompletes(t *testing.T) {
	stream := craftedSubgroup(0, 1, craftedObject(0, 1<<40, nil))
	p := newFrameParser(1 << 20)
	n, err := feedAll(p, stream, 1)
	if !errors.Is(err, ErrObjectTooLarge) {
		t.Fatalf("want ErrObjectTooLarge, got %v", err)
	}
	// The library must never see the final byte of the length varint.
	if n != len(stream)-1 {
		t.Fatalf("consumed %d of %d bytes", n, len(stream))
	}
}

func TestFrameParserRefusesExtensionsAndBadType(t *testing.T) {
	ext := quicvarint.Append(nil, 0)
	ext = quicvarint.Append(ext, 2) // ext length 2
	ext = append(ext, 0x02, 0x01)
	ext = quicvarint.Append(ext, 1)
	ext = append(ext, 'a')
	if _, err := feedAll(newFrameParser(100), craftedSubgroup(0, 0, ext), 7); !errors.Is(err, errExtensionsRefused) {
		t.Fatalf("want errExtensionsRefused, got %v", err)
	}
	if _, err := feedAll(newFrameParser(100), []byte{0x01, 0, 0}, 1); !errors.Is(err, errBadStreamType) {
		t.Fatalf("want errBadStreamType, got %v", err)
	}
}

func TestFrameParserFetchStream(t *testing.T) {
	b := quicvarint.Append(nil, 0x05)
	b = quicvarint.Append(b, 4) // request ID
	for i := uint64(0); i < 3; i++ {
		b = quicvarint.Append(b, 1) // group
		b = quicvarint.Append(b, 0) // subgroup
		b = quicvarint.Append(b, i) // object
		b = append(b, 0)            // priority
		b = quicvarint.Append(b, 0) // ext len
		b = quicvarint.Append(b, 3)
		b = append(b, "abc"...)
	}
	p := newFrameParser(10)
	if _, err := feedAll(p, b, 5); err != nil || p.Objects != 3 || !p.isFetch() {
		t.Fatalf("err=%v objects=%d", err, p.Objects)
	}
}

// FuzzFrameParser: untrusted bytes in arbitrary chunking never panic, never
// make feed claim more than it was given, and never let a declared payload
// above the maximum through.
func FuzzFrameParser(f *testing.F) {
	f.Add(craftedSubgroup(3, 9, craftedObject(0, 5, []byte("hello")), craftedObject(1, 0, []byte{0})), uint8(3))
	f.Add(craftedSubgroup(0, 1, craftedObject(0, 1<<40, nil)), uint8(1))
	f.Add([]byte{0x05, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 'a'}, uint8(2))
	f.Add([]byte{0x08, 0x00, 0x00, 0x80, 0x00, 0x00, 0x01, 0xff}, uint8(4))
	f.Add([]byte{0x0a, 0x01, 0x02, 0x03, 0x04, 0x05}, uint8(1))
	f.Add([]byte{0xc0, 0, 0, 0, 0, 0, 0, 0x0d}, uint8(8))
	f.Add([]byte{}, uint8(0))
	const max = 1000
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		p := newFrameParser(max)
		_, err := feedAll(p, data, int(chunk)+1)
		if err != nil && !errors.Is(err, ErrObjectTooLarge) && !errors.Is(err, errExtensionsRefused) && !errors.Is(err, errBadStreamType) {
			t.Fatalf("unexpected error type %v", err)
		}
		if p.lastLen > max {
			t.Fatalf("declared length %d accepted above max %d", p.lastLen, max)
		}
	})
}
