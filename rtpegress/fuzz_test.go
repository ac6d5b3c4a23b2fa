package rtpegress

import (
	"bytes"
	"errors"
	"testing"

	"github.com/moqsframe/moqsframe/rtpingest"
)

// nalUnits splits an Annex-B stream as the packetizer does.
func nalUnits(t *testing.T, frame []byte) [][]byte {
	p := &Packetizer{}
	if err := p.splitAnnexB(frame); err != nil {
		t.Fatal(err)
	}
	return p.nals
}

// isSubList reports whether sub's elements appear in list in order.
func isSubList(sub, list [][]byte) bool {
	i := 0
	for _, s := range sub {
		for i < len(list) && !bytes.Equal(list[i], s) {
			i++
		}
		if i == len(list) {
			return false
		}
		i++
	}
	return true
}

// fuzzPacketizer: a frame is refused whole or sent in packets within the
// MTU; rtpingest gives back exactly the frame, or with packets dropped
// (bits of drop) a frame whose NAL units are a sub-list of the input's.
func fuzzPacketizer(f *testing.F, c Codec, seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(uint16(100), uint64(0), s)
		f.Add(uint16(64), uint64(0b100), s)
	}
	f.Fuzz(func(t *testing.T, mtu uint16, drop uint64, frame []byte) {
		p, err := NewPacketizer(Config{Codec: c, SSRC: 1, Sequence: 1, MTU: 64 + int(mtu)%1500})
		if err != nil {
			t.Fatal(err)
		}
		var out packets
		n, err := p.WriteFrame(&out, 5, frame)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) || len(out) > 0 {
				t.Fatalf("err %v after %d packets", err, len(out))
			}
			return
		}
		if n != len(out) {
			t.Fatalf("%d packets reported, %d written", n, len(out))
		}
		var kept [][]byte
		for i, d := range out {
			if len(d) > p.cfg.MTU {
				t.Fatalf("packet of %d bytes, MTU %d", len(d), p.cfg.MTU)
			}
			if i >= 64 || drop&(1<<i) == 0 {
				kept = append(kept, d)
			}
		}
		r, _ := rtpingest.NewReceiver(rtpingest.Config{Codec: rtpingest.Codec(c)})
		var got [][]byte
		// An empty packet after the frame completes the source's
		// probation when only one packet came.
		tail := bytes.Clone(out[len(out)-1][:12])
		tail[3]++
		if tail[3] == 0 {
			tail[2]++
		}
		for _, d := range append(kept, tail) {
			r.Push(d)
			for fr, ok := r.Next(); ok; fr, ok = r.Next() {
				got = append(got, bytes.Clone(fr.Data))
			}
		}
		r.Flush()
		for fr, ok := r.Next(); ok; fr, ok = r.Next() {
			got = append(got, bytes.Clone(fr.Data))
		}
		if len(got) > 1 {
			t.Fatalf("%d frames from one", len(got))
		}
		dropped := len(kept) < len(out)
		switch {
		case c == H264 || c == H265:
			in := nalUnits(t, frame)
			if len(got) == 1 && !isSubList(nalUnits(t, got[0]), in) {
				t.Fatalf("NAL units out %x not a sub-list of in %x", got[0], in)
			}
			// Complete frames: every NAL unit comes back (a frame of
			// parameter sets alone is held for a next frame).
			if !dropped && len(got) == 1 && len(nalUnits(t, got[0])) != len(in) {
				t.Fatalf("%d NAL units out of %d", len(nalUnits(t, got[0])), len(in))
			}
		case len(got) == 1 && !bytes.Equal(got[0], frame):
			t.Fatalf("frame differs")
		case !dropped && len(got) == 0 && !(c == Opus && len(frame) <= 2) &&
			!(c == VP8 && frame[0]&1 != 0) && !(c == VP9 && !vp9Key(frame)):
			// Lost although whole, neither DTX nor a first frame that
			// is not a keyframe (rtpingest waits for one).
			t.Fatalf("frame lost")
		}
	})
}

func FuzzPacketizeH264(f *testing.F) {
	fuzzPacketizer(f, H264, annexB(nal264(7, 20), nal264(8, 6), nal264(8, 7), nal264(6, 30), nal264(5, 500)), annexB(nal264(1, 90)))
}

func FuzzPacketizeH265(f *testing.F) {
	fuzzPacketizer(f, H265, annexB([]byte{32 << 1, 1, 0xc}, append([]byte{19 << 1, 1, 0x80}, make([]byte, 300)...)))
}

func FuzzPacketizeVP8(f *testing.F) {
	fuzzPacketizer(f, VP8, append([]byte{0x10}, make([]byte, 300)...))
}

func FuzzPacketizeVP9(f *testing.F) {
	fuzzPacketizer(f, VP9, append([]byte{0x82}, make([]byte, 300)...))
}

func FuzzPacketizeOpus(f *testing.F) { fuzzPacketizer(f, Opus, []byte{0x78, 1, 2, 3}) }
