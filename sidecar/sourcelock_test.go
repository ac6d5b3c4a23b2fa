package sidecar

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moqsframe/moqsframe/sframe"
)

func TestSourceLock(t *testing.T) {
	udp := func(s string) net.Addr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	t0 := time.Unix(1000, 0)
	type pkt struct {
		from  string
		at    time.Duration
		admit bool
	}
	for _, tc := range []struct {
		name  string
		allow string
		pkts  []pkt
	}{
		{"first sender locks", "", []pkt{
			{"127.0.0.1:5000", 0, true}, {"127.0.0.1:5001", time.Second, false}, {"10.0.0.9:5000", 2 * time.Second, false},
			{"127.0.0.1:5000", 4 * time.Second, true}, {"127.0.0.1:5001", 6 * time.Second, false},
		}},
		{"a quiet sender is replaced", "", []pkt{
			{"127.0.0.1:5000", 0, true}, {"127.0.0.1:5001", 3 * time.Second, false},
			{"127.0.0.1:5001", 3*time.Second + 1, true}, {"127.0.0.1:5000", 4 * time.Second, false},
		}},
		{"configured host, any port", "127.0.0.1:0", []pkt{
			{"127.0.0.1:5000", 0, true}, {"127.0.0.1:5001", 0, true}, {"10.0.0.9:5000", 10 * time.Second, false},
		}},
		{"configured host and port, never replaced", "127.0.0.1:5000", []pkt{
			{"127.0.0.1:5001", 0, false}, {"127.0.0.1:5000", time.Second, true}, {"127.0.0.1:5001", time.Hour, false},
		}},
		{"IPv4-mapped IPv6 is the IPv4 sender", "127.0.0.1:5000", []pkt{
			{"[::ffff:127.0.0.1]:5000", 0, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &sourceLock{quiet: 3 * time.Second}
			if tc.allow != "" {
				l.allow = netip.MustParseAddrPort(tc.allow)
			}
			for i, p := range tc.pkts {
				if got := l.admit(udp(p.from), t0.Add(p.at)); got != p.admit {
					t.Errorf("packet %d from %s at %v: admitted %v, want %v", i, p.from, p.at, got, p.admit)
				}
			}
		})
	}
}

// TestRTPSourceTakesOneSender: an RTP input locked to its first sender
// seals that sender's frames only; another sender's datagrams, valid RTP
// included, are dropped and counted.
func TestRTPSourceTakesOneSender(t *testing.T) {
	keys, err := NewStaticKeys(sframe.AES128GCMSHA256_128, bytes.Repeat([]byte{3}, 16))
	if err != nil {
		t.Fatal(err)
	}
	sealed := &captureSink{}
	sc, _ := New(Config{Mode: Encrypt, Namespace: []string{"ns"}, Keys: keys, Sink: sealed})
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	src := &RTPSource{Conn: conn, Track: "video", Codec: H264, Sidecar: sc}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- src.Run(ctx, nil) }()

	encoder, _ := net.Dial("udp", conn.LocalAddr().String())
	mallory, _ := net.Dial("udp", conn.LocalAddr().String())
	defer encoder.Close()
	defer mallory.Close()
	send := func(c net.Conn, seq uint16, payload string) {
		b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true},
			Payload: append([]byte{0x65}, payload...)}).Marshal()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	// The encoder's first datagram locks the input; then the two
	// interleave. Each step waits for the input to have read the datagram,
	// so the order is the one written here.
	read := func() uint64 { st, other := src.Stats(); return st.Packets + other }
	send(encoder, 0, "encoder 0")
	waitFor(t, func() bool { return read() == 1 })
	for i := uint16(1); i <= 20; i++ {
		send(mallory, i, "forged")
		waitFor(t, func() bool { return read() == uint64(2*i) })
		send(encoder, i, fmt.Sprint("encoder ", i))
		waitFor(t, func() bool { return read() == uint64(2*i+1) })
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sc.Close()
	if st, other := src.Stats(); len(sealed.recs) != 21 || other != 20 || st.Delivered != 21 {
		t.Fatalf("sealed %d objects, %d datagrams from another sender, %+v; want 21 and 20", len(sealed.recs), other, st)
	}
}

// waitFor polls cond until it holds, failing after 30 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 30 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRTPCountersAddUp: every datagram an RTP input reads ends in exactly
// one outcome of sidecar_rtp_<track>_datagrams_total (or, for a moment, in
// the buffered gauge), and they add up to packets_total.
func TestRTPCountersAddUp(t *testing.T) {
	keys, _ := NewStaticKeys(sframe.AES128GCMSHA256_128, bytes.Repeat([]byte{4}, 16))
	sealed := &captureSink{}
	sc, _ := New(Config{Mode: Encrypt, Namespace: []string{"ns"}, Keys: keys, Sink: sealed})
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	src := &RTPSource{Conn: conn, Track: "video", Codec: H264, Sidecar: sc}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- src.Run(ctx, reg) }()
	encoder, _ := net.Dial("udp", conn.LocalAddr().String())
	other, _ := net.Dial("udp", conn.LocalAddr().String())
	defer encoder.Close()
	defer other.Close()

	sent := 0
	read := func() uint64 { st, o := src.Stats(); return st.Packets + o }
	write := func(c net.Conn, b []byte) {
		t.Helper()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		sent++
		waitFor(t, func() bool { return read() == uint64(sent) })
	}
	frame := func(seq uint16, nal byte, ssrc uint32) []byte {
		b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: ssrc, Marker: true},
			Payload: []byte{nal, 1, 2, 3}}).Marshal()
		return b
	}
	padding := func(seq uint16, ts uint32) []byte {
		b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 7, Padding: true}, PaddingSize: 16}).Marshal()
		return b
	}
	sr := append([]byte{0x80, 0xc8, 0x00, 0x06}, make([]byte, 24)...)
	// Ten one-packet frames; after the fourth, two padding-only packets
	// (a bandwidth probe: next sequence numbers, the frame's timestamp);
	// after the sixth an RTCP sender report, a malformed datagram, the
	// sixth frame again, and a datagram from another sender.
	var seq uint16
	for i := 0; i < 10; i++ {
		nal := byte(0x41)
		if i == 0 {
			nal = 0x65
		}
		f := frame(seq, nal, 7)
		ts := uint32(seq) * 3000
		seq++
		write(encoder, f)
		switch i {
		case 3:
			write(encoder, padding(seq, ts))
			write(encoder, padding(seq+1, ts))
			seq += 2
		case 5:
			write(encoder, sr)
			write(encoder, []byte{0x80, 1})
			write(encoder, f)
			write(other, f)
		}
	}
	mfs, err := reg.Gather() // while Run runs: it unregisters the collector as it returns
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sc.Close()
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]float64{}
	var packets, buffered float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "sidecar_rtp_video_datagrams_total":
				outcomes[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			case "sidecar_rtp_video_packets_total":
				packets = m.GetCounter().GetValue()
			case "sidecar_rtp_video_buffered":
				buffered = m.GetGauge().GetValue()
			}
		}
	}
	var sum float64
	for _, v := range outcomes {
		sum += v
	}
	if packets != float64(sent) || sum+buffered != packets {
		t.Fatalf("%d datagrams sent; packets_total %v, outcomes %v (sum %v) + buffered %v", sent, packets, outcomes, sum, buffered)
	}
	want := map[string]float64{"delivered": 10, "duplicate": 1, "rtcp": 1, "malformed": 1, "other_sender": 1, "empty": 2}
	for k, v := range want {
		if outcomes[k] != v {
			t.Errorf("outcome %s = %v, want %v (all: %v)", k, outcomes[k], v, outcomes)
		}
	}
	if len(sealed.recs) != 10 {
		t.Errorf("%d frames sealed, want 10", len(sealed.recs))
	}
}
