package rtpegress

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/moqsframe/moqsframe/rtpingest"
)

// packets collects each Write as one datagram.
type packets [][]byte

func (p *packets) Write(b []byte) (int, error) {
	*p = append(*p, bytes.Clone(b))
	return len(b), nil
}

func nal264(typ byte, n int) []byte {
	b := []byte{0x60 | typ, 0x80}
	for len(b) < n {
		b = append(b, byte(len(b))|1)
	}
	return b[:n]
}

func annexB(nals ...[]byte) []byte {
	var b []byte
	for _, n := range nals {
		b = append(append(b, 0, 0, 0, 1), n...)
	}
	return b
}

func newPacketizer(t testing.TB, c Codec, mtu int) *Packetizer {
	t.Helper()
	p, err := NewPacketizer(Config{Codec: c, SSRC: 7, Sequence: 65000, MTU: mtu})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// receive depacketizes with rtpingest and returns the frames.
func receive(t testing.TB, c rtpingest.Codec, dgrams [][]byte) [][]byte {
	t.Helper()
	r, err := rtpingest.NewReceiver(rtpingest.Config{Codec: c})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, d := range dgrams {
		if err := r.Push(d); err != nil {
			t.Fatal(err)
		}
		for f, ok := r.Next(); ok; f, ok = r.Next() {
			out = append(out, bytes.Clone(f.Data))
		}
	}
	r.Flush()
	for f, ok := r.Next(); ok; f, ok = r.Next() {
		out = append(out, bytes.Clone(f.Data))
	}
	if st := r.Stats(); st.Malformed+st.Lost+st.Dropped != 0 {
		t.Fatalf("receiver stats %+v", st)
	}
	return out
}

// Issue 11.4: an access unit with SPS, three PPS, SEI and an IDR slice:
// all six NAL units reach the wire in order, as a STAP-A and FU-As.
func TestH264EveryNALUnit(t *testing.T) {
	au := annexB(nal264(7, 20), nal264(8, 6), nal264(8, 7), nal264(8, 8), nal264(6, 30), nal264(5, 3000))
	p := newPacketizer(t, H264, 1200)
	var out packets
	n, err := p.WriteFrame(&out, 90000, au)
	if err != nil || n != 4 || len(out) != 4 {
		t.Fatalf("%d packets, err %v", n, err)
	}
	// pion's depacketizer, an independent reading of the packets.
	var got []byte
	var h codecs.H264Packet
	for i, d := range out {
		var pkt rtp.Packet
		if err := pkt.Unmarshal(d); err != nil {
			t.Fatal(err)
		}
		if pkt.Marker != (i == 3) || pkt.SequenceNumber != uint16(65000+i) || pkt.Timestamp != 90000 || pkt.SSRC != 7 || len(d) > 1200 {
			t.Errorf("packet %d header %+v, %d bytes", i, pkt.Header, len(d))
		}
		b, err := h.Unmarshal(pkt.Payload)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}
	if out[0][12]&0x1f != 24 {
		t.Errorf("first packet type %d, want STAP-A", out[0][12]&0x1f)
	}
	if !bytes.Equal(normalize(got), au) {
		t.Fatalf("pion reads %x\nwant %x", got, au)
	}
	if fs := receive(t, rtpingest.H264, out); len(fs) != 1 || !bytes.Equal(fs[0], au) {
		t.Fatalf("rtpingest reads %d frames", len(fs))
	}
	if st := p.Stats(); st != (Stats{Frames: 1, Packets: 4, Bytes: uint64(len(out[0]) + len(out[1]) + len(out[2]) + len(out[3]))}) {
		t.Errorf("stats %+v", st)
	}
}

// normalize rewrites pion's 3- or 4-byte start codes as 4-byte ones.
func normalize(b []byte) []byte {
	var nals [][]byte
	for _, part := range bytes.Split(b, []byte{0, 0, 1}) {
		if part = bytes.TrimRight(part, "\x00"); len(part) > 0 {
			nals = append(nals, part)
		}
	}
	return annexB(nals...)
}

func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte{0xab, 0xcd, 0x17}, 2000)
	vp9Key := append([]byte{0x82}, big...)   // frame_marker 2, profile 0, frame_type 0
	vp9Inter := append([]byte{0x86}, big...) // frame_type 1
	h265VPS := []byte{32 << 1, 1, 0xc0, 0x11}
	h265IDR := append([]byte{19 << 1, 1, 0x80}, big[:3000]...)
	h265Trail := append([]byte{1 << 1, 1, 0x80}, big[:100]...)
	for _, tc := range []struct {
		codec  Codec
		frames [][]byte
	}{
		{H264, [][]byte{annexB(nal264(7, 10), nal264(8, 4), nal264(5, 5000)), annexB(nal264(1, 900)), annexB(nal264(1, 20)),
			// 3-byte start codes and trailing zeros are normalized
			{0, 0, 1, 0x41, 0x80, 7, 0, 0, 0, 0, 1, 0x41, 0x80, 9, 0}}},
		{H265, [][]byte{annexB(h265VPS, h265IDR), annexB(h265Trail), annexB(h265Trail, h265Trail)}},
		{VP8, [][]byte{append([]byte{0x10}, big...), append([]byte{0x11}, big[:100]...)}},
		{VP9, [][]byte{vp9Key, vp9Inter[:50], vp9Inter}},
		{Opus, [][]byte{{0x78, 1, 2, 3}, {0x78, 4, 5, 6}}},
	} {
		t.Run(string(tc.codec), func(t *testing.T) {
			p := newPacketizer(t, tc.codec, 1000)
			var out packets
			for i, f := range tc.frames {
				if _, err := p.WriteFrame(&out, uint32(i*3000), f); err != nil {
					t.Fatal(err)
				}
			}
			for _, d := range out {
				if len(d) > 1000 {
					t.Fatalf("packet of %d bytes", len(d))
				}
			}
			want := slices.Clone(tc.frames)
			if tc.codec == H264 {
				want[3] = annexB([]byte{0x41, 0x80, 7}, []byte{0x41, 0x80, 9})
			}
			if got := receive(t, rtpingest.Codec(tc.codec), out); !slices.EqualFunc(got, want, bytes.Equal) {
				t.Fatalf("got %d frames, want %d", len(got), len(want))
			}
		})
	}
}

// pion's VP8 and VP9 depacketizers read our packets, and pion's
// payloaders' packets are read by rtpingest: the two implementations
// agree on RFC 7741 and RFC 9628.
func TestVPxAgainstPion(t *testing.T) {
	frame := append([]byte{0x82}, bytes.Repeat([]byte{1, 2, 3}, 700)...)
	for _, codec := range []Codec{VP8, VP9} {
		p := newPacketizer(t, codec, 600)
		var out packets
		if _, err := p.WriteFrame(&out, 0, frame); err != nil {
			t.Fatal(err)
		}
		var got []byte
		for _, d := range out {
			var pkt rtp.Packet
			pkt.Unmarshal(d)
			var b []byte
			var err error
			if codec == VP8 {
				var v codecs.VP8Packet
				b, err = v.Unmarshal(pkt.Payload)
				if v.S == 1 != (len(got) == 0) || v.PictureID != p.picID-1 {
					t.Errorf("VP8 S=%d picture ID %d", v.S, v.PictureID)
				}
			} else {
				var v codecs.VP9Packet
				b, err = v.Unmarshal(pkt.Payload)
				if v.B != (len(got) == 0) || v.P {
					t.Errorf("VP9 B=%v P=%v", v.B, v.P)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b...)
		}
		if !bytes.Equal(got, frame) {
			t.Errorf("%s: pion reads %d bytes, want %d", codec, len(got), len(frame))
		}
		// And the other way.
		var pay interface{ Payload(uint16, []byte) [][]byte } = &codecs.VP8Payloader{EnablePictureID: true}
		if codec == VP9 {
			pay = &codecs.VP9Payloader{FlexibleMode: true}
		}
		var dgrams [][]byte
		for i, f := range [][]byte{frame, frame[:300]} {
			pls := pay.Payload(600, f)
			for j, pl := range pls {
				b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(len(dgrams)), Timestamp: uint32(i),
					SSRC: 1, Marker: j == len(pls)-1}, Payload: pl}).Marshal()
				dgrams = append(dgrams, b)
			}
		}
		if fs := receive(t, rtpingest.Codec(codec), dgrams); len(fs) != 2 || !bytes.Equal(fs[0], frame) || !bytes.Equal(fs[1], frame[:300]) {
			t.Errorf("%s: rtpingest reads %d frames of pion's", codec, len(fs))
		}
	}
}

func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		codec Codec
		frame []byte
		err   error
	}{
		{H264, []byte{0x65, 1, 2}, ErrMalformed},                         // no start code
		{H264, annexB([]byte{0x7c, 1, 2}), ErrMalformed},                 // FU-A type inside a frame
		{H264, annexB([]byte{0xe5, 1}), ErrMalformed},                    // forbidden bit
		{H264, append([]byte{9}, annexB(nal264(5, 9))...), ErrMalformed}, // garbage before the start code
		{H265, annexB([]byte{49 << 1, 1, 2}), ErrMalformed},
		{H265, annexB([]byte{2}), ErrMalformed}, // shorter than its header
		{VP8, nil, ErrMalformed},
		{Opus, make([]byte, 2000), ErrTooLarge},
	} {
		p := newPacketizer(t, tc.codec, 1200)
		var out packets
		if _, err := p.WriteFrame(&out, 0, tc.frame); !errors.Is(err, tc.err) || len(out) > 0 {
			t.Errorf("%s %x: err %v, %d packets", tc.codec, tc.frame, err, len(out))
		}
		if st := p.Stats(); st.Refused != 1 || st.Packets != 0 {
			t.Errorf("stats %+v", st)
		}
	}
	for _, cfg := range []Config{{Codec: "x"}, {Codec: H264, MTU: 63}, {Codec: VP8, PayloadType: 128}} {
		if _, err := NewPacketizer(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	a, _ := NewPacketizer(Config{Codec: Opus})
	b, _ := NewPacketizer(Config{Codec: Opus})
	if a.SSRC() == b.SSRC() {
		t.Error("two random SSRCs are equal")
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func TestPacketizerAllocs(t *testing.T) {
	au := annexB(nal264(7, 20), nal264(8, 6), nal264(8, 7), nal264(6, 30), nal264(5, 5000))
	for _, c := range []Codec{H264, H265, VP8, VP9, Opus} {
		p := newPacketizer(t, c, 1200)
		frame := au
		if c == Opus {
			frame = au[:500]
		}
		if c == H265 {
			frame = annexB([]byte{32 << 1, 1, 2, 3}, append([]byte{19 << 1, 1}, nal264(5, 5000)[1:]...))
		}
		if a := testing.AllocsPerRun(100, func() {
			if _, err := p.WriteFrame(discard{}, 1, frame); err != nil {
				t.Fatal(err)
			}
		}); a != 0 {
			t.Errorf("%s: %.1f allocations per frame", c, a)
		}
	}
}
