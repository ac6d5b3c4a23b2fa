package rtpingest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// nalu returns an H.264 NAL unit of type typ and n bytes, nal_ref_idc 3; a
// slice's first byte after the header is 0x80 (first_mb_in_slice 0).
func nalu(typ byte, n int) []byte {
	b := []byte{0x60 | typ, 0x80}
	for len(b) < n {
		b = append(b, byte(len(b))|1) // no zero bytes: no emulated start codes
	}
	return b[:max(n, 2)]
}

func annexB(nals ...[]byte) []byte {
	var b []byte
	for _, n := range nals {
		b = append(append(b, 0, 0, 0, 1), n...)
	}
	return b
}

// fuA splits a NAL unit into FU-A payloads of at most size bytes of data.
func fuA(nal []byte, size int) [][]byte {
	var out [][]byte
	data := nal[1:]
	for i := 0; i < len(data); i += size {
		fh := nal[0] & 0x1f
		if i == 0 {
			fh |= 0x80
		}
		if i+size >= len(data) {
			fh |= 0x40
		}
		out = append(out, append([]byte{nal[0]&0xe0 | 28, fh}, data[i:min(i+size, len(data))]...))
	}
	return out
}

func stapA(nals ...[]byte) []byte {
	b := []byte{0x78}
	for _, n := range nals {
		b = append(b, byte(len(n)>>8), byte(len(n)))
		b = append(b, n...)
	}
	return b
}

// h264Stream returns n frames of two FU-A packets each (an IDR every
// keyEvery frames, from frame 0), starting at seq and timestamp ts, and
// the frames' expected Annex-B data.
func h264Stream(t testing.TB, ssrc uint32, seq uint16, ts uint32, n, keyEvery int) ([][]byte, [][]byte) {
	var dgrams, frames [][]byte
	for i := range n {
		typ := byte(1)
		if i%keyEvery == 0 {
			typ = 5
		}
		nal := nalu(typ, 300+i%7)
		frames = append(frames, annexB(nal))
		fu := fuA(nal, 200)
		for j, pl := range fu {
			dgrams = append(dgrams, pkt{seq: seq, ts: ts, ssrc: ssrc, marker: j == len(fu)-1, payload: pl}.bytes(t))
			seq++
		}
		ts += 3000
	}
	return dgrams, frames
}

func datas(g []got) [][]byte {
	var d [][]byte
	for _, f := range g {
		d = append(d, f.data)
	}
	return d
}

func equalFrames(a, b [][]byte) bool { return slices.EqualFunc(a, b, bytes.Equal) }

func checkStats(t *testing.T, r *Receiver, want Stats) {
	t.Helper()
	st := r.Stats()
	if st != want {
		t.Errorf("stats\n got %+v\nwant %+v", st, want)
	}
}

// Issue 11.1: padding-only packets after a frame (libwebrtc's bandwidth
// probes) are neither malformed nor damage the next frame.
func TestPaddingOnlyPackets(t *testing.T) {
	idr, p := nalu(5, 50), nalu(1, 40)
	r := newReceiver(t, H264)
	frames := feed(t, r, [][]byte{
		pkt{seq: 1, ts: 0, marker: true, payload: idr}.bytes(t),
		pkt{seq: 2, ts: 0, padding: 224}.bytes(t),
		pkt{seq: 3, ts: 0, padding: 255}.bytes(t),
		pkt{seq: 4, ts: 3000, marker: true, payload: p, padding: 4}.bytes(t), // padding after a payload is removed
	})
	if want := [][]byte{annexB(idr), annexB(p)}; !equalFrames(datas(frames), want) {
		t.Fatalf("frames %x, want %x", datas(frames), want)
	}
	checkStats(t, r, Stats{Packets: 4, Delivered: 2, Empty: 2, Frames: 2})
}

// Issue 11.2: a sender restarts with a new SSRC and lower sequence numbers.
func TestSSRCChange(t *testing.T) {
	a, aFrames := h264Stream(t, 0xa, 21294, 1000, 30, 10)
	b, bFrames := h264Stream(t, 0xb, 12676, 5, 301, 30)
	r := newReceiver(t, H264)
	frames := feed(t, r, append(a, b...))
	if want := append(aFrames, bFrames...); !equalFrames(datas(frames), want) {
		t.Fatalf("%d frames, want %d", len(frames), len(want))
	}
	if f := frames[30]; f.group != 3 || f.obj != 0 || !f.key {
		t.Errorf("first frame of the new source: group %d object %d key %v, want a keyframe starting group 3", f.group, f.obj, f.key)
	}
	checkStats(t, r, Stats{Packets: 662, Delivered: 662, Frames: 331, SourceChanges: 1})
}

// A new source whose first frames are not keyframes: they are dropped, and
// the new source's first keyframe starts a new group.
func TestSSRCChangeWaitsForKeyframe(t *testing.T) {
	a, _ := h264Stream(t, 0xa, 100, 0, 3, 10)
	b, bFrames := h264Stream(t, 0xb, 7, 0, 13, 10) // keyframes at b's frames 0 and 10
	b = b[2:]                                      // b's first frame (its IDR) lost before the sidecar
	r := newReceiver(t, H264)
	frames := feed(t, r, append(a, b...))
	if len(frames) != 6 || !bytes.Equal(frames[3].data, bFrames[10]) || frames[3].group != 1 {
		t.Fatalf("%d frames; frame 3 group %d", len(frames), frames[3].group)
	}
	checkStats(t, r, Stats{Packets: 30, Delivered: 12, Discarded: 18, Frames: 6, Dropped: 9, SourceChanges: 1})
}

// Stray packets of another SSRC between the active source's are foreign
// and do not disturb it; a run of fewer than 8 does not take over.
func TestForeignSSRC(t *testing.T) {
	a, aFrames := h264Stream(t, 0xa, 100, 0, 10, 10)
	var in [][]byte
	for i, d := range a {
		in = append(in, d)
		if i%4 == 1 {
			for k := range 3 {
				in = append(in, pkt{seq: uint16(500 + 3*i + k), ts: 9, ssrc: 0xbad, payload: nalu(5, 10), marker: true}.bytes(t))
			}
		}
	}
	r := newReceiver(t, H264)
	frames := feed(t, r, in)
	if !equalFrames(datas(frames), aFrames) {
		t.Fatalf("%d frames", len(frames))
	}
	checkStats(t, r, Stats{Packets: 35, Delivered: 20, Foreign: 15, Frames: 10})
}

// Issue 11.3: RTCP on the RTP port (RFC 5761) is counted, never parsed as
// media; a BYE ends the source, and the next one starts without waiting
// for a switch probation.
func TestRTCPMux(t *testing.T) {
	a, aFrames := h264Stream(t, 0xa, 100, 0, 4, 10)
	b, bFrames := h264Stream(t, 0xb, 9, 0, 2, 10)
	in := [][]byte{a[0], senderReport(0xa), a[1], a[2]}
	in = append(in, a[3:7]...)
	// The BYE comes before a's last packet, a frame's marker packet.
	in = append(in, rtcpBye(0xa), []byte{0x80, 200, 0, 9}, a[7])
	in = append(in, b...)
	r := newReceiver(t, H264)
	frames := feed(t, r, in)
	if want := append(aFrames[:3], bFrames...); !equalFrames(datas(frames), want) {
		t.Fatalf("%d frames, want %d", len(frames), len(want))
	}
	if ssrc, ok := r.Source(); !ok || ssrc != 0xb {
		t.Errorf("source %x %v, want b", ssrc, ok)
	}
	checkStats(t, r, Stats{Packets: 15, Delivered: 10, Discarded: 1, Foreign: 1, RTCP: 2, Malformed: 1,
		Frames: 5, Dropped: 1, SourceChanges: 1, SenderReports: 1, Byes: 1})
}

// A sender that never sets the marker: frames end at timestamp changes,
// the last one at Flush.
func TestMarkerless(t *testing.T) {
	in, want := h264Stream(t, 1, 10, 0, 5, 10)
	for i := range in {
		in[i][1] &^= 0x80
	}
	r := newReceiver(t, H264)
	frames := feed(t, r, in)
	if !equalFrames(datas(frames), want) {
		t.Fatalf("%d frames, want %d", len(frames), len(want))
	}
	checkStats(t, r, Stats{Packets: 10, Delivered: 10, Frames: 5})
}

// Parameter sets sent alone (own timestamp, own marker) are kept and
// prepended to the next frame; several PPS in a STAP-A all arrive.
func TestParameterSetsAlone(t *testing.T) {
	sps, pps0, pps1, pps2, sei, idr := nalu(7, 12), nalu(8, 4), nalu(8, 5), nalu(8, 6), nalu(6, 9), nalu(5, 700)
	in := [][]byte{
		pkt{seq: 1, ts: 0, marker: true, payload: sps}.bytes(t),
		pkt{seq: 2, ts: 0, marker: true, payload: stapA(pps0, pps1, pps2)}.bytes(t),
		pkt{seq: 3, ts: 3000, payload: sei}.bytes(t),
	}
	for i, pl := range fuA(idr, 300) {
		in = append(in, pkt{seq: uint16(4 + i), ts: 3000, marker: i == 2, payload: pl}.bytes(t))
	}
	r := newReceiver(t, H264)
	frames := feed(t, r, in)
	if want := annexB(sps, pps0, pps1, pps2, sei, idr); len(frames) != 1 || !bytes.Equal(frames[0].data, want) || !frames[0].key {
		t.Fatalf("frames %x\nwant %x", datas(frames), want)
	}
	checkStats(t, r, Stats{Packets: 6, Delivered: 6, Frames: 1})
}

// Reordering within the window, duplicates, a packet later than the
// window, and a loss.
func TestReorderDuplicateLateLoss(t *testing.T) {
	in, want := h264Stream(t, 1, 65500, 0xffffd000, 40, 10) // sequence and timestamp wrap
	perm := slices.Clone(in)
	perm[3], perm[5] = perm[5], perm[3]      // reordered within the window
	perm[10], perm[11] = perm[11], perm[10]  // reordered within the window
	perm = slices.Insert(perm, 20, perm[17]) // duplicate after release
	perm = slices.Insert(perm, 25, perm[24]) // duplicate while held? (in order: released at once)
	late := perm[30]                         // frame 15's first packet, delivered 40 packets later
	perm = slices.Delete(perm, 30, 31)       //
	perm = slices.Insert(perm, 70, late)     //
	perm = slices.Delete(perm, 50, 51)       // lost: frame 24 or 25's packet
	r := newReceiver(t, H264)
	frames := feed(t, r, perm)
	var wantFrames [][]byte
	for i, f := range want {
		if i != 14 && i != 24 { // frame 14 lost its first packet (late); the loss hit frame 24
			wantFrames = append(wantFrames, f)
		}
	}
	if !equalFrames(datas(frames), wantFrames) {
		t.Fatalf("%d frames, want %d", len(frames), len(wantFrames))
	}
	checkStats(t, r, Stats{Packets: 81, Delivered: 76, Discarded: 2, Late: 1, Duplicate: 2, Lost: 2, Frames: 38, Dropped: 2})
}

// RFC 3550 §A.1: a jump of more than MAX_DROPOUT within one SSRC is a
// stray packet unless the next one follows it: then the sender restarted.
func TestSequenceJump(t *testing.T) {
	a, aFrames := h264Stream(t, 1, 100, 0, 4, 10)
	b, bFrames := h264Stream(t, 1, 40000, 0, 3, 10)
	stray := pkt{seq: 9000, ts: 5, ssrc: 1, marker: true, payload: nalu(5, 20)}.bytes(t)
	in := append([][]byte{a[0], a[1], stray}, a[2:]...)
	in = append(in, b...)
	r := newReceiver(t, H264)
	frames := feed(t, r, in)
	if want := append(aFrames, bFrames...); !equalFrames(datas(frames), want) {
		t.Fatalf("%d frames, want %d", len(frames), len(want))
	}
	checkStats(t, r, Stats{Packets: 15, Delivered: 14, Late: 1, Frames: 7, SourceChanges: 1})
}

// CSRCs and header extensions are skipped; malformed datagrams are counted
// and lose nothing else.
func TestHeaderFieldsAndMalformed(t *testing.T) {
	good := pkt{seq: 2, ts: 0, marker: true, payload: nalu(5, 30), csrc: 3, ext: true, padding: 3}.bytes(t)
	short := pkt{seq: 3, ts: 0, payload: nalu(1, 5)}.bytes(t)[:11]
	v1 := pkt{seq: 3, payload: nalu(1, 5)}.bytes(t)
	v1[0] = 0x40 | v1[0]&0x3f
	badPad := pkt{seq: 3, payload: nalu(1, 5), padding: 2}.bytes(t)
	badPad[len(badPad)-1] = 200
	badExt := pkt{seq: 3, payload: nalu(1, 5), ext: true}.bytes(t)
	badExt[15] = 99 // extension length in words
	in := [][]byte{
		pkt{seq: 1, ts: 0, payload: nalu(9, 2)}.bytes(t), good, short, v1, badPad, badExt, {},
		pkt{seq: 3, ts: 3000, payload: []byte{0x7c, 0x01, 0xab}}.bytes(t), // FU-A continuation without start
		pkt{seq: 4, ts: 3000, marker: true, payload: nalu(1, 9)}.bytes(t),
		pkt{seq: 5, ts: 6000, marker: true, payload: []byte{0x78, 0, 9, 0x65}}.bytes(t), // STAP-A overrun
		pkt{seq: 6, ts: 9000, marker: true, payload: nalu(1, 9)}.bytes(t),
	}
	r := newReceiver(t, H264)
	var errs int
	for _, d := range in {
		if err := r.Push(d); errors.Is(err, ErrMalformed) {
			errs++
		}
	}
	r.Flush()
	var frames [][]byte
	for f, ok := r.Next(); ok; f, ok = r.Next() {
		frames = append(frames, bytes.Clone(f.Data))
	}
	if want := [][]byte{annexB(nalu(9, 2), nalu(5, 30)), annexB(nalu(1, 9))}; !equalFrames(frames, want) {
		t.Fatalf("frames %x, want %x", frames, want)
	}
	if errs != 7 {
		t.Errorf("%d ErrMalformed, want 7", errs)
	}
	checkStats(t, r, Stats{Packets: 11, Delivered: 3, Discarded: 1, Malformed: 7, Frames: 2, Dropped: 2})
}

// Opus: DTX and empty packets are neither frames nor errors; a group every
// AudioGroupFrames frames.
func TestOpusDTX(t *testing.T) {
	r, err := NewReceiver(Config{Codec: Opus, AudioGroupFrames: 3})
	if err != nil {
		t.Fatal(err)
	}
	var in [][]byte
	var want [][]byte
	for i := range 10 {
		pl := []byte{0x78, byte(i), 0xaa, 0xbb}
		switch i {
		case 3, 4:
			pl = []byte{0x78} // DTX
		case 5:
			pl = nil
		default:
			want = append(want, pl)
		}
		in = append(in, pkt{seq: uint16(i), ts: uint32(i * 960), payload: pl, marker: i == 0}.bytes(t))
	}
	frames := feed(t, r, in)
	if !equalFrames(datas(frames), want) {
		t.Fatalf("frames %x", datas(frames))
	}
	var ids []string
	for _, f := range frames {
		ids = append(ids, fmt.Sprintf("%d/%d", f.group, f.obj))
	}
	if got := fmt.Sprint(ids); got != "[0/0 0/1 0/2 1/0 1/1 1/2 2/0]" {
		t.Errorf("group/object IDs %s", got)
	}
	checkStats(t, r, Stats{Packets: 10, Delivered: 7, Empty: 3, Frames: 7})
}

func TestConfig(t *testing.T) {
	for _, cfg := range []Config{{Codec: "av1"}, {Codec: H264, ReorderWindow: 101}, {Codec: H264, ReorderWindow: -1}} {
		if _, err := NewReceiver(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
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
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
