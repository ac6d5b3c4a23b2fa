package rtpingest

import (
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// BenchmarkReceiverH264 depacketizes the same H.264 stream (STAP-A and
// FU-A packets) with Receiver and, as the baseline, with pion's RTP parser
// and H264Packet (no reorder window, no source state, no counters), and
// reports Receiver's time per packet over pion's as "ratio".
func BenchmarkReceiverH264(b *testing.B) {
	in := steadyH264(b, 300)
	run := func(b *testing.B, push func(d []byte)) float64 {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			push(in[i%len(in)])
		}
		return float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	}
	var ours, pions float64
	r0 := newReceiver(b, H264)
	b.Run("rtpingest", func(b *testing.B) {
		r := r0
		var seq uint16
		var ts uint32
		ours = run(b, func(d []byte) {
			// Renumber so that the stream never repeats.
			d[2], d[3] = byte(seq>>8), byte(seq)
			d[4], d[5], d[6], d[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
			if d[1]&0x80 != 0 {
				ts += 3000
			}
			seq++
			if err := r.Push(d); err != nil {
				b.Fatal(err)
			}
			for _, ok := r.Next(); ok; _, ok = r.Next() {
			}
		})
	})
	b.Run("pion", func(b *testing.B) {
		var p rtp.Packet
		var h codecs.H264Packet
		pions = run(b, func(d []byte) {
			if p.Unmarshal(d) == nil {
				h.Unmarshal(p.Payload)
			}
		})
	})
	if st := r0.Stats(); st.Dropped != 0 || st.Lost != 0 {
		b.Fatalf("stats %+v", st)
	}
	if pions > 0 {
		b.Logf("rtpingest %.0f ns/packet, pion %.0f ns/packet, ratio %.2f", ours, pions, ours/pions)
	}
}
