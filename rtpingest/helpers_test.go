package rtpingest

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/rtp"
)

// pkt is a test packet: header fields and payload.
type pkt struct {
	seq     uint16
	ts      uint32
	ssrc    uint32
	marker  bool
	payload []byte
	padding byte // RTP padding octets to append (RFC 3550 §5.1)
	csrc    int
	ext     bool
}

func (p pkt) bytes(t testing.TB) []byte {
	t.Helper()
	ssrc := p.ssrc
	if ssrc == 0 {
		ssrc = 0x1111
	}
	h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: p.seq, Timestamp: p.ts, SSRC: ssrc, Marker: p.marker}
	for i := range p.csrc {
		h.CSRC = append(h.CSRC, uint32(i+1))
	}
	if p.ext {
		if err := h.SetExtension(1, []byte{0xaa, 0xbb}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := (&rtp.Packet{Header: h, Payload: p.payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if p.padding > 0 {
		b[0] |= 0x20
		b = append(b, make([]byte, p.padding-1)...)
		b = append(b, p.padding)
	}
	return b
}

type got struct {
	ts    uint32
	key   bool
	group uint64
	obj   uint64
	data  []byte
}

// feed pushes datagrams, checks the counter identity after each, flushes
// and returns the frames.
func feed(t testing.TB, r *Receiver, dgrams [][]byte) []got {
	t.Helper()
	var out []got
	collect := func() {
		for f, ok := r.Next(); ok; f, ok = r.Next() {
			out = append(out, got{f.Timestamp, f.Keyframe, f.Group, f.Object, bytes.Clone(f.Data)})
		}
	}
	for i, d := range dgrams {
		r.Push(d)
		collect()
		if st := r.Stats(); st.Sum() != st.Packets {
			t.Fatalf("after datagram %d: counters add up to %d, want %d: %+v", i, st.Sum(), st.Packets, st)
		}
	}
	r.Flush()
	collect()
	if st := r.Stats(); st.Sum() != st.Packets || st.Buffered != 0 {
		t.Fatalf("after Flush: counters add up to %d, want %d (buffered %d): %+v", st.Sum(), st.Packets, st.Buffered, st)
	}
	return out
}

func newReceiver(t testing.TB, c Codec) *Receiver {
	t.Helper()
	r, err := NewReceiver(Config{Codec: c})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rtcpBye(ssrc uint32) []byte {
	b := []byte{0x81, 203, 0, 1, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], ssrc)
	return b
}

func senderReport(ssrc uint32) []byte {
	b := make([]byte, 28)
	b[0], b[1], b[3] = 0x80, 200, 6
	binary.BigEndian.PutUint32(b[4:], ssrc)
	return b
}
