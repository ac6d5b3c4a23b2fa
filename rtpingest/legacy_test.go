package rtpingest

import (
	"testing"

	"github.com/pion/rtp"
)

func rtpPacket(seq uint16, ts uint32, marker bool, payload []byte) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, SSRC: 5, Marker: marker}, Payload: payload}
}

// The deprecated per-packet wrappers: a frame per Push as it completes;
// a second frame completed by the same packet comes with the next Push.
func TestLegacyH264Depacketizer(t *testing.T) {
	var d H264Depacketizer
	var got []int64
	for _, p := range []*rtp.Packet{
		rtpPacket(1, 0, true, nalu(5, 20)),
		rtpPacket(2, 3000, false, nalu(1, 20)), // marker-less frame ...
		rtpPacket(3, 6000, true, nalu(1, 10)),  // ... ended by a one-packet marked frame
		rtpPacket(4, 9000, true, nalu(1, 11)),
		rtpPacket(5, 12000, true, []byte{0x7c, 0x01}), // FU-A continuation without start
	} {
		f, ok, err := d.Push(p)
		switch {
		case ok:
			got = append(got, int64(f.Timestamp))
		case err != nil:
			got = append(got, -2)
		default:
			got = append(got, -1)
		}
	}
	if want := []int64{0, -1, 3000, 6000, 9000}; !equalInts(got, want) {
		t.Fatalf("returned %v, want %v", got, want)
	}
	if st := d.Stats(); st.Packets != 5 || st.Frames != 4 || st.Malformed != 1 || st.Dropped != 1 {
		t.Errorf("stats %+v", st)
	}
	var o OpusDepacketizer
	got = got[:0]
	for _, seq := range []uint16{10, 11, 13, 12, 14} {
		if f, ok, _ := o.Push(rtpPacket(seq, uint32(seq)*960, false, []byte{0x78, byte(seq), 1})); ok {
			got = append(got, int64(f.Timestamp/960))
		}
	}
	// 12 completes two frames, 12 and 13: from then on each Push returns
	// the frame before its own.
	if want := []int64{10, 11, 12, 13}; !equalInts(got, want) {
		t.Fatalf("Opus frames %v, want %v (reordered back)", got, want)
	}
	if f, ok := o.l.r.Next(); !ok || f.Timestamp != 14*960 {
		t.Fatalf("frame 14 not queued")
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
