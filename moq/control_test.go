package moq

import (
	"bytes"
	"context"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
)

func ctlMsg(typ uint64, payload []byte) []byte {
	b := quicvarint.Append(nil, typ)
	b = append(b, byte(len(payload)>>8), byte(len(payload)))
	return append(b, payload...)
}

func newTestControlStream(live ...uint64) *controlStream {
	sess := &Session{
		cfg:    (&Config{}).withDefaults(),
		ctx:    context.Background(),
		live:   map[uint64]*subscriber{},
		ctlSem: make(chan struct{}, 1),

		relayedAnnouncers: map[uint64]string{},
		peerAnnounced:     map[string]int{},
	}
	for _, id := range live {
		sess.live[id] = nil
	}
	return &controlStream{sess: sess}
}

// feedControl runs input through split in chunks and returns what the
// library would see.
func feedControl(cs *controlStream, input []byte, chunk int) []byte {
	var seen []byte
	for len(input) > 0 {
		n := min(chunk, len(input))
		cs.raw = append(cs.raw, input[:n]...)
		input = input[n:]
		cs.split()
		seen = append(seen, cs.ready...)
		cs.ready = nil
		if cs.holding {
			cs.sess.unlockCtl()
			cs.holding = false
		}
	}
	return seen
}

func TestControlFilterDropsOnlyStaleMessages(t *testing.T) {
	live := quicvarint.Append(nil, 4)
	stale := quicvarint.Append(nil, 6)
	setup := ctlMsg(0x21, []byte{1, 2, 3})
	in := bytes.Join([][]byte{
		setup,
		ctlMsg(msgTypeUnsubscribe, stale),
		ctlMsg(msgTypeUnsubscribe, live),
		ctlMsg(msgTypeSubscribeUpdate, stale),
		ctlMsg(msgTypeFetchCancel, live),
		ctlMsg(0x03, bytes.Repeat([]byte{7}, 300)),
	}, nil)
	want := bytes.Join([][]byte{setup, ctlMsg(msgTypeUnsubscribe, live), ctlMsg(0x03, bytes.Repeat([]byte{7}, 300))}, nil)
	for chunk := 1; chunk <= len(in); chunk += 7 {
		cs := newTestControlStream(4)
		if got := feedControl(cs, in, chunk); !bytes.Equal(got, want) {
			t.Fatalf("chunk %d: library would see %x, want %x", chunk, got, want)
		}
		if cs.sess.stats.staleUnsubscribes.Load() != 3 {
			t.Fatalf("chunk %d: stale count %d", chunk, cs.sess.stats.staleUnsubscribes.Load())
		}
	}
}

// FuzzControlFilter: arbitrary control-stream bytes in arbitrary chunks
// never panic, and the library sees a prefix-ordered subsequence made of
// whole messages: passed + dropped + still buffered = input.
func FuzzControlFilter(f *testing.F) {
	f.Add(ctlMsg(msgTypeUnsubscribe, []byte{0x06}), uint8(1))
	f.Add(append(ctlMsg(0x21, []byte{1}), ctlMsg(msgTypeFetchCancel, []byte{2})...), uint8(3))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint8(2))
	f.Add([]byte{0x0a, 0x00}, uint8(1))
	f.Add(announceMsg(7, []string{"a", "b"}, "relay-edge1"), uint8(4))
	f.Add(append(announceMsg(7, []string{"a"}, ""), ctlMsg(msgTypeUnannounce, []byte{1, 1, 'a'})...), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		cs := newTestControlStream(1, 2)
		seen := feedControl(cs, data, int(chunk)+1)
		if len(seen)+len(cs.raw) > len(data) {
			t.Fatalf("library would see %d bytes + %d buffered from %d input bytes", len(seen), len(cs.raw), len(data))
		}
		if !bytes.HasSuffix(data, cs.raw) {
			t.Fatal("buffered bytes are not the input's tail")
		}
	})
}
