package moq

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// chunkStream serves data in chunks of varying size, like a QUIC stream.
type chunkStream struct {
	data     []byte
	rng      *rand.Rand
	canceled bool
}

func (c *chunkStream) Read(p []byte) (int, error) {
	if c.canceled {
		return 0, errors.New("stream canceled")
	}
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1 + c.rng.IntN(3000)
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkStream) CancelRead(quic.StreamErrorCode) { c.canceled = true }
func (c *chunkStream) StreamID() quic.StreamID         { return 2 }

// runGuard reads stream through a guardedStream the way moqtransport does
// (varying buffer sizes), emulating the library's channel: objects completed
// in the returned bytes are "pushed", and the emulated reader releases them
// in random batches. It checks the returned bytes are a prefix of the input
// and that the channel never holds more than libraryQueueCredit objects.
func runGuard(t *testing.T, stream []byte, maxPayload int, seed uint64) (returned []byte, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	in := newInbound()
	sess := &Session{
		cfg:      (&Config{MaxObjectSize: maxPayload}).withDefaults(),
		ctx:      ctx,
		inbounds: map[uint64]*inbound{0: in},
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	g := newGuardedStream(&chunkStream{data: stream, rng: rng}, sess)
	ref := newFrameParser(^uint64(0)) // counts objects in what the library got
	held := 0
	for i := 0; i < 1_000_000; i++ {
		if held == libraryQueueCredit || (held > 0 && rng.IntN(3) == 0) {
			k := 1 + rng.IntN(held)
			for j := 0; j < k; j++ {
				in.release()
			}
			held -= k
		}
		buf := make([]byte, 1+rng.IntN(5000))
		n, rerr := g.Read(buf)
		if n < 0 || n > len(buf) {
			t.Fatalf("Read returned n=%d for a %d-byte buffer", n, len(buf))
		}
		before := ref.Objects
		rest := buf[:n]
		for len(rest) > 0 {
			c, ev, ferr := ref.feed(rest)
			if ferr != nil {
				// The library would refuse bad framing itself; stop here.
				return returned, ferr
			}
			if ev == evObjectPending {
				ref.grant()
			}
			rest = rest[c:]
		}
		returned = append(returned, buf[:n]...)
		// Only objects of a subscribed alias take the library's channel
		// credit; it drops those of unknown aliases and of FETCH streams
		// nobody asked for, and the guard lets them through unheld.
		if _, subscribed := sess.inbounds[ref.Identifier]; subscribed && !ref.isFetch() {
			held += int(ref.Objects - before)
		}
		if held > libraryQueueCredit {
			t.Fatalf("library channel would hold %d objects (> %d)", held, libraryQueueCredit)
		}
		if errors.Is(rerr, ErrSessionClosed) {
			t.Fatalf("guardedStream blocked waiting for credit with %d objects held", held)
		}
		if rerr != nil {
			if !bytes.HasPrefix(stream, returned) {
				t.Fatal("returned bytes are not a prefix of the stream")
			}
			return returned, rerr
		}
		if ctx.Err() != nil {
			t.Fatal("guardedStream blocked")
		}
	}
	t.Fatal("too many reads")
	return nil, nil
}

func validStream(rng *rand.Rand, objects int) []byte {
	var objs [][]byte
	for i := 0; i < objects; i++ {
		size := rng.IntN(3000)
		if rng.IntN(10) == 0 {
			size = 0
		}
		payload := make([]byte, size)
		for j := range payload {
			payload[j] = byte(rng.Uint32())
		}
		if size == 0 {
			payload = []byte{0} // status
		}
		objs = append(objs, craftedObject(uint64(i), uint64(size), payload))
	}
	return craftedSubgroup(0, 5, objs...)
}

func TestGuardedStreamPassesValidStreamsUnchanged(t *testing.T) {
	for seed := uint64(0); seed < 30; seed++ {
		rng := rand.New(rand.NewPCG(seed, 2))
		stream := validStream(rng, 1+rng.IntN(400))
		got, err := runGuard(t, stream, 1<<20, seed)
		if err != io.EOF {
			t.Fatalf("seed %d: want io.EOF, got %v", seed, err)
		}
		if !bytes.Equal(got, stream) {
			t.Fatalf("seed %d: bytes differ (%d vs %d)", seed, len(got), len(stream))
		}
	}
}

func TestGuardedStreamStopsOversize(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	good := validStream(rng, 50)
	bad := append(append([]byte(nil), good...), craftedObject(50, 1<<40, nil)...)
	got, err := runGuard(t, bad, 1<<20, 9)
	if !errors.Is(err, ErrObjectTooLarge) {
		t.Fatalf("want ErrObjectTooLarge, got %v", err)
	}
	if len(got) != len(bad)-1 {
		t.Fatalf("returned %d bytes, want all but the last length byte (%d)", len(got), len(bad)-1)
	}
}

// FuzzGuardedStream: arbitrary bytes in arbitrary chunking never panic,
// never deadlock, only ever return a prefix of the input, and never let the
// emulated library channel exceed its credit.
func FuzzGuardedStream(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 1))
	f.Add(validStream(rng, 5), uint64(1))
	f.Add(craftedSubgroup(0, 1, craftedObject(0, 1<<40, nil)), uint64(2))
	f.Add([]byte{0x0d, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, uint64(3))
	f.Add([]byte{0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 'x'}, uint64(4))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		_, _ = runGuard(t, data, 4096, seed)
	})
}
