package rtpingest_test

import (
	"github.com/moqsframe/moqsframe/internal/mediatest"

	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/moqsframe/moqsframe/rtpingest"
)

// item is a datagram of the fault injector with what the model needs.
type item struct {
	b         []byte
	rtp       bool
	frame     int  // frame index, -1 for RTCP, padding and DTX
	after     bool // sent by the new source
	protected bool // part of a source's probation: no faults
}

// Fault rates of the injector, per RTP packet.
const (
	dropRate      = 0.01
	duplicateRate = 0.02
	reorderRate   = 0.05 // moved 1 to 3 places later
	paddingRate   = 0.04 // after a frame, a burst of 3 padding-only packets
	newSSRC       = 0xc0ffee
)

// injectFaults applies, with a fixed seed, padding bursts, an SSRC change
// (a sender restart with lower sequence numbers) at the first keyframe of
// the second half, drops, duplicates and reordering; ffmpeg's RTCP stays
// mixed in, with a receiver report every 40 datagrams. It returns the datagrams and the counters a model of the
// faults predicts: a frame is delivered when all its packets arrive
// (duplicates aside) and, after the SSRC change, from the new source's
// first complete keyframe on; a frame of which some but not all packets
// arrive is dropped. The probation of each source (its first packets) is
// left alone (faults there are tested in the package-level tests), and
// so are the last packets, whose loss no later packet reveals.
func injectFaults(t *testing.T, dgrams [][]byte, frames []rtpingest.Frame, codec rtpingest.Codec) ([][]byte, rtpingest.Stats) {
	rng := rand.New(rand.NewPCG(11, 2026))
	var want rtpingest.Stats
	want.SourceChanges = 1

	// Frames: a new one at a timestamp change or after a marker.
	var items []item
	frame, prevTS, prevMarker := -1, uint32(0), true
	for _, d := range dgrams {
		d = bytes.Clone(d)
		switch {
		case mediatest.IsRTCP(d):
			items = append(items, item{b: d, frame: -1})
			want.RTCP++
		case codec == rtpingest.Opus && len(d) <= 12+2: // DTX
			items = append(items, item{b: d, rtp: true, frame: -1})
		default:
			ts := binary.BigEndian.Uint32(d[4:])
			if prevMarker || ts != prevTS {
				frame++
			}
			prevTS, prevMarker = ts, d[1]&0x80 != 0
			items = append(items, item{b: d, rtp: true, frame: frame})
		}
	}
	n := frame + 1
	if n != len(frames) {
		t.Fatalf("%d frames by timestamps and markers, %d from the receiver", n, len(frames))
	}
	change := n / 2
	for change < n && codec != rtpingest.Opus && !frames[change].Keyframe {
		change++
	}
	if change == n { // no keyframe in the second half (intra refresh)
		change = n / 2
	}

	// Padding bursts (renumbering what follows) and the SSRC change.
	var out []item
	shift := uint16(0)
	var lastSeq uint16
	after := false
	for _, it := range items {
		if it.frame == change && !after {
			after = true
		}
		if it.rtp {
			seq := binary.BigEndian.Uint16(it.b[2:]) + shift
			lastSeq = seq
			if after {
				seq -= 9000
				binary.BigEndian.PutUint32(it.b[8:], newSSRC)
			}
			binary.BigEndian.PutUint16(it.b[2:], seq)
		}
		it.after = after
		out = append(out, it)
		if it.rtp && it.frame >= 0 && it.b[1]&0x80 != 0 && rng.Float64() < paddingRate {
			for range 3 {
				lastSeq++
				shift++
				p := bytes.Clone(it.b[:12])
				p[0] |= 0x20
				p[1] &^= 0x80
				seq := lastSeq
				if after {
					seq -= 9000
				}
				binary.BigEndian.PutUint16(p[2:], seq)
				p = append(p, make([]byte, 199)...)
				p = append(p, 200)
				out = append(out, item{b: p, rtp: true, frame: -1, after: after})
			}
		}
	}
	items = out
	// More RTCP on the port: a receiver report every 40 datagrams.
	out = nil
	for i, it := range items {
		if i > 0 && i%40 == 0 {
			rr := []byte{0x80, 201, 0, 1, 0, 0, 0x0e, 0x0e}
			out = append(out, item{b: rr, frame: -1, after: it.after})
			want.RTCP++
		}
		out = append(out, it)
	}
	items = out
	// Protect each source's first packets and everything near the change.
	rtpSeen := 0
	for i := range items {
		if items[i].rtp {
			rtpSeen++
		}
		if rtpSeen <= 2 {
			items[i].protected = true
		}
	}
	for i := max(0, len(items)-3); i < len(items); i++ {
		items[i].protected = true // a loss at the very end is seen by no receiver
	}
	for i := range items {
		if items[i].after {
			for j := max(0, i-12); j < min(len(items), i+12); j++ {
				items[j].protected = true
			}
			break
		}
	}
	// Drops.
	total := make([]int, n)
	present := make([]int, n)
	out = out[:0:0]
	for _, it := range items {
		if it.frame >= 0 {
			total[it.frame]++
		}
		if it.rtp && !it.protected && it.b[0]&0x20 == 0 && rng.Float64() < dropRate {
			want.Lost++
			continue
		}
		if it.frame >= 0 {
			present[it.frame]++
		} else if it.rtp {
			want.Empty++ // padding or DTX
		}
		out = append(out, it)
	}
	items = out
	movable := func(i, j int) bool {
		if j >= len(items) {
			return false
		}
		for k := i; k <= j; k++ {
			if items[k].protected || items[k].after != items[i].after {
				return false
			}
		}
		return true
	}
	// Duplicates, up to 5 places later.
	for i := 0; i < len(items); i++ {
		if j := i + 1 + rng.IntN(5); items[i].rtp && rng.Float64() < duplicateRate && movable(i, j) {
			items = append(items[:j], append([]item{{b: items[i].b, rtp: true, frame: -1, after: items[i].after}}, items[j:]...)...)
			want.Duplicate++
		}
	}
	// Reordering: a packet moves 1 to 3 places later.
	moved := 0
	for i := 0; i < len(items); i++ {
		if j := i + 1 + rng.IntN(3); items[i].rtp && rng.Float64() < reorderRate && movable(i, j) {
			it := items[i]
			copy(items[i:j], items[i+1:j+1])
			items[j] = it
			moved++
		}
	}

	if want.Lost == 0 || want.Duplicate == 0 || moved == 0 || want.Empty == 0 {
		t.Fatalf("the injector made %d drops, %d duplicates, %d moves, %d padding: too few packets", want.Lost, want.Duplicate, moved, want.Empty)
	}
	t.Logf("injected: %d drops, %d duplicates, %d moves, %d padding or DTX packets, SSRC change at frame %d of %d", want.Lost, want.Duplicate, moved, want.Empty, change, n)

	// The model.
	waiting := false
	for f := range n {
		if f == change {
			waiting = true
		}
		switch {
		case present[f] == 0:
		case present[f] == total[f] && (!waiting || frames[f].Keyframe):
			want.Frames++
			waiting = false
		default:
			want.Dropped++
		}
	}
	var dg [][]byte
	for _, it := range items {
		dg = append(dg, it.b)
	}
	return dg, want
}
