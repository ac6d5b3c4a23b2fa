package rtpingest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// packetize splits Annex-B access units into RTP packets with pion's
// payloader (an independent implementation), marker on each unit's last.
func packetize(t testing.TB, aus [][]byte, mtu uint16) []*rtp.Packet {
	t.Helper()
	var pay codecs.H264Payloader
	var pkts []*rtp.Packet
	seq := uint16(65530) // exercises wrap-around
	for i, au := range aus {
		payloads := pay.Payload(mtu, au)
		for j, pl := range payloads {
			pkts = append(pkts, &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(i * 3000),
				Marker: j == len(payloads)-1}, Payload: pl})
			seq++
		}
	}
	return pkts
}

func nal(typ byte, n int) []byte {
	b := append([]byte{0, 0, 0, 1, 0x60 | typ}, bytes.Repeat([]byte{typ, 0xab}, n/2)...)
	return b
}

func testAUs() [][]byte {
	return [][]byte{
		append(append(nal(7, 10), nal(8, 4)...), nal(5, 5000)...), // SPS PPS IDR
		nal(1, 900),
		nal(1, 20),
		append(nal(6, 8), nal(1, 3000)...),
		append(append(nal(7, 10), nal(8, 4)...), nal(5, 40)...),
	}
}

func TestH264RoundTrip(t *testing.T) {
	aus := testAUs()
	var d H264Depacketizer
	var got []Frame
	for _, p := range packetize(t, aus, 1200) {
		f, ok, err := d.Push(p)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			got = append(got, Frame{Data: bytes.Clone(f.Data), Timestamp: f.Timestamp, Keyframe: f.Keyframe})
		}
	}
	if len(got) != len(aus) {
		t.Fatalf("%d frames, want %d", len(got), len(aus))
	}
	for i := range aus {
		// pion's payloader drops AUD/SPS-in-STAP nuances? compare NAL content.
		if !bytes.Equal(got[i].Data, aus[i]) {
			t.Errorf("frame %d: %d bytes, want %d", i, len(got[i].Data), len(aus[i]))
		}
		if got[i].Keyframe != (i == 0 || i == 4) || got[i].Timestamp != uint32(i*3000) {
			t.Errorf("frame %d: keyframe %v ts %d", i, got[i].Keyframe, got[i].Timestamp)
		}
	}
	if st := d.Stats(); st.Frames != 5 || st.Lost != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestH264LossDropsOnlyDamagedFrames(t *testing.T) {
	aus := testAUs()
	pkts := packetize(t, aus, 1200)
	// Frame 0 spans 5 packets (FU-A); drop its third. Frame 3's marker packet goes too.
	var kept []*rtp.Packet
	for i, p := range pkts {
		if i == 2 || (p.Timestamp == 9000 && p.Marker) {
			continue
		}
		kept = append(kept, p)
	}
	var d H264Depacketizer
	var frames []uint32
	var losses int
	for _, p := range kept {
		f, ok, err := d.Push(p)
		if errors.Is(err, ErrLoss) {
			losses++
		}
		if ok {
			frames = append(frames, f.Timestamp)
		}
	}
	if want := []uint32{3000, 6000, 12000}; !equalU32(frames, want) {
		t.Fatalf("frames %v, want %v", frames, want)
	}
	st := d.Stats()
	if st.Dropped != 2 || st.Lost != 2 || losses != 1 {
		t.Fatalf("stats %+v, loss errors %d", st, losses)
	}
}

func TestH264Malformed(t *testing.T) {
	for _, payload := range [][]byte{
		{}, {0x80}, {0x1e}, {24, 0, 5, 1}, {24, 0}, {28, 0x05}, {28, 0x05, 1}, // continuation without start
	} {
		var d H264Depacketizer
		_, ok, err := d.Push(&rtp.Packet{Header: rtp.Header{Marker: true}, Payload: payload})
		if ok || err == nil {
			t.Errorf("%x: ok=%v err=%v", payload, ok, err)
		}
	}
}

func TestGrouper(t *testing.T) {
	var g Grouper
	var got [][2]uint64
	for _, key := range []bool{false, false, true, false, true, true} {
		gr, ob := g.Next(key)
		got = append(got, [2]uint64{gr, ob})
	}
	want := [][2]uint64{{0, 0}, {0, 1}, {1, 0}, {1, 1}, {2, 0}, {3, 0}}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	audio := Grouper{MaxGroupFrames: 3}
	var ids [][2]uint64
	for range 7 {
		gr, ob := audio.Next(true)
		ids = append(ids, [2]uint64{gr, ob})
	}
	if ids[2] != [2]uint64{0, 2} || ids[3] != [2]uint64{1, 0} || ids[6] != [2]uint64{2, 0} {
		t.Fatalf("audio groups %v", ids)
	}
}

func TestOpus(t *testing.T) {
	var d OpusDepacketizer
	for i, seq := range []uint16{10, 11, 13, 12, 14} {
		f, ok, _ := d.Push(&rtp.Packet{Header: rtp.Header{SequenceNumber: seq}, Payload: []byte{byte(i + 1)}})
		if (seq == 12) == ok {
			t.Errorf("seq %d: ok=%v", seq, ok)
		}
		if ok && !f.Keyframe {
			t.Error("opus frame not independent")
		}
	}
	if st := d.Stats(); st.Frames != 4 || st.Lost != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func equalU32(a, b []uint32) bool {
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

func FuzzH264Depacketizer(f *testing.F) {
	for _, p := range packetize(f, testAUs(), 300) {
		b, _ := p.Marshal()
		f.Add(b)
	}
	f.Add([]byte{0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 28, 0x85})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Treat the input as a sequence of length-prefixed RTP packets.
		var d H264Depacketizer
		for len(data) > 2 {
			n := int(data[0])<<8 | int(data[1])
			data = data[2:]
			if n > len(data) {
				n = len(data)
			}
			var p rtp.Packet
			if p.Unmarshal(data[:n]) == nil {
				if f, ok, _ := d.Push(&p); ok && (len(f.Data) < 5 || !bytes.HasPrefix(f.Data, annexBStartCode)) {
					t.Fatalf("frame without Annex-B start: %x", f.Data)
				}
			}
			data = data[n:]
		}
	})
}
