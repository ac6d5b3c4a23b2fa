package sidecar

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/moqsframe/moqsframe/rtpingest"

	"github.com/moqsframe/moqsframe/sframe"
)

type captureSink struct {
	mu   sync.Mutex
	recs []Record
}

func (c *captureSink) WriteObject(track string, g, sg, o uint64, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, Record{Track: track, Group: g, Subgroup: sg, ObjectID: o, Payload: bytes.Clone(p)})
	return nil
}

func TestEncryptDecryptThroughSidecars(t *testing.T) {
	keys, err := NewStaticKeys(sframe.AES128GCMSHA256_128, bytes.Repeat([]byte{1}, 16))
	if err != nil {
		t.Fatal(err)
	}
	ns := []string{"example.org", "live"}
	sealed := &captureSink{}
	enc, err := New(Config{Mode: Encrypt, Namespace: ns, Keys: keys, Sink: sealed})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	frame := func(track string, g, o int) []byte {
		return []byte(fmt.Sprintf("%s frame %d/%d plaintext", track, g, o))
	}
	for g := range 5 {
		for o := range 20 {
			for _, tr := range []string{"video", "audio"} {
				if err := enc.Submit(ctx, tr, uint64(g), 0, uint64(o), frame(tr, g, o)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	enc.Close()
	if len(sealed.recs) != 200 {
		t.Fatalf("%d sealed objects", len(sealed.recs))
	}
	for _, r := range sealed.recs {
		if bytes.Contains(r.Payload, []byte("plaintext")) {
			t.Fatal("plaintext visible after sealing")
		}
	}
	// A relay swaps two objects' IDs, and corrupts one. The records are
	// picked by identity: the encrypting workers interleave the tracks in
	// any order, and two records at fixed positions may share an ID.
	recs := sealed.recs
	at := func(track string, g, o uint64) *Record {
		for i := range recs {
			if r := &recs[i]; r.Track == track && r.Group == g && r.ObjectID == o {
				return r
			}
		}
		t.Fatalf("no sealed %s %d/%d", track, g, o)
		return nil
	}
	a, b := at("video", 0, 5), at("video", 0, 6)
	a.ObjectID, b.ObjectID = b.ObjectID, a.ObjectID
	c := at("audio", 2, 7)
	c.Payload[len(c.Payload)-1] ^= 1

	opened := &captureSink{}
	dec, _ := New(Config{Mode: Decrypt, Namespace: ns, Keys: keys, Sink: opened})
	for _, r := range recs {
		dec.Submit(ctx, r.Track, r.Group, r.Subgroup, r.ObjectID, r.Payload)
	}
	dec.Close()
	if got := testutil.ToFloat64(dec.M.AuthFailures); got != 3 {
		t.Fatalf("%v auth failures, want 3 (two swapped, one corrupted)", got)
	}
	if len(opened.recs) != 197 {
		t.Fatalf("%d opened", len(opened.recs))
	}
	for _, r := range opened.recs {
		if !bytes.Equal(r.Payload, frame(r.Track, int(r.Group), int(r.ObjectID))) {
			t.Fatalf("%s %d/%d: %q", r.Track, r.Group, r.ObjectID, r.Payload)
		}
	}
	var lat dto.Metric
	if err := dec.M.Latency.Write(&lat); err != nil {
		t.Fatal(err)
	}
	if n := lat.GetHistogram().GetSampleCount(); n != 197 {
		t.Fatalf("latency observations %d", n)
	}
}

// A restarted encrypting sidecar must not reuse (KID, CTR) under the same
// base key: each run takes new KIDs.
func TestStaticKeysNewKIDsPerRun(t *testing.T) {
	base := bytes.Repeat([]byte{2}, 16)
	seen := map[uint64]bool{}
	for range 50 {
		k, _ := NewStaticKeys(sframe.AES128GCMSHA256_128, base)
		s, _ := k.Sealer(nil)
		kid := s.(*sframe.Sender).KID()
		if seen[kid] {
			t.Fatalf("KID %d reused across runs", kid)
		}
		seen[kid] = true
	}
}

func TestRecordRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	fs := NewFileSink(&buf)
	fs.WriteObject("video", 1, 2, 3, []byte("abc"))
	fs.WriteObject("audio", 4, 0, 5, nil)
	fs.Flush()
	rd := bufio.NewReader(&buf)
	r1, err1 := ReadRecord(rd)
	r2, err2 := ReadRecord(rd)
	if err1 != nil || err2 != nil || r1.Track != "video" || string(r1.Payload) != "abc" || r1.ObjectID != 3 || r2.Group != 4 {
		t.Fatalf("%+v %v %+v %v", r1, err1, r2, err2)
	}
	if _, err := ReadRecord(rd); err == nil {
		t.Fatal("no EOF")
	}
	if _, err := ReadRecord(bufio.NewReader(bytes.NewReader([]byte{5, 'v'}))); err == nil {
		t.Fatal("truncated record accepted")
	}
}

// Frames written to the RTP sink come back out of a depacketizer intact,
// including one large enough to need FU-A fragmentation.
func TestRTPSinkRoundTrip(t *testing.T) {
	video, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer video.Close()
	video.(*net.UDPConn).SetReadBuffer(1 << 20)
	audio, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer audio.Close()
	sink, err := NewRTPSink([]RTPOutput{{Track: "video", Codec: H264, Addr: video.LocalAddr().String()},
		{Track: "audio", Codec: Opus, Addr: audio.LocalAddr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	frames := [][]byte{
		append([]byte{0, 0, 0, 1, 0x65}, bytes.Repeat([]byte{0xab}, 5000)...), // IDR, fragmented
		append([]byte{0, 0, 0, 1, 0x41}, []byte("small delta frame")...),
	}
	for _, f := range frames {
		if err := sink.WriteObject("video", 0, 0, 0, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.WriteObject("audio", 0, 0, 0, []byte("opus packet")); err != nil {
		t.Fatal(err)
	}
	if err := sink.WriteObject("other", 0, 0, 0, []byte("x")); err == nil {
		t.Fatal("unknown track accepted")
	}
	rc, err := rtpingest.NewReceiver(rtpingest.Config{Codec: rtpingest.H264})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	var got [][]byte
	video.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < len(frames) {
		n, _, err := video.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.Push(buf[:n]); err != nil {
			t.Fatal(err)
		}
		for f, ok := rc.Next(); ok; f, ok = rc.Next() {
			got = append(got, bytes.Clone(f.Data))
		}
	}
	for i := range frames {
		if !bytes.Equal(got[i], frames[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
	audio.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := audio.ReadFrom(buf)
	var p rtp.Packet
	if err != nil || p.Unmarshal(buf[:n]) != nil || string(p.Payload) != "opus packet" || p.PayloadType != 111 {
		t.Fatalf("audio packet %+v err %v", p.Header, err)
	}
}

// TestExtract: a track's payloads come out in (group, object) order, once
// each, whatever order they were recorded in; other tracks are skipped.
func TestExtract(t *testing.T) {
	var file bytes.Buffer
	fs := NewFileSink(&file)
	for _, r := range []Record{
		{Track: "video", Group: 1, ObjectID: 0, Payload: []byte("C")},
		{Track: "audio", Group: 0, ObjectID: 0, Payload: []byte("x")},
		{Track: "video", Group: 0, ObjectID: 1, Payload: []byte("B")},
		{Track: "video", Group: 0, ObjectID: 0, Payload: []byte("A")},
		{Track: "video", Group: 1, ObjectID: 0, Payload: []byte("C")},
		{Track: "video", Group: 1, ObjectID: 1, Payload: []byte("DD")},
	} {
		fs.WriteObject(r.Track, r.Group, r.Subgroup, r.ObjectID, r.Payload)
	}
	fs.Flush()
	var out bytes.Buffer
	st, err := Extract(bytes.NewReader(file.Bytes()), int64(file.Len()), "video", &out)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "ABCDD" || st != (ExtractStats{Objects: 4, Duplicates: 1, Bytes: 5}) {
		t.Fatalf("extracted %q, %+v", out.String(), st)
	}
	if _, err := Extract(bytes.NewReader(file.Bytes()[:file.Len()-1]), int64(file.Len()-1), "video", &out); !errors.Is(err, ErrRecord) {
		t.Fatalf("truncated file: %v, want ErrRecord", err)
	}
}
