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
	"github.com/prometheus/client_golang/prometheus/testutil"

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
	// The encoder's first frame locks the input; then the two interleave.
	// Each step waits for the input to have taken the datagram, so the
	// order is the one written here.
	send(encoder, 0, "encoder 0")
	waitFor(t, func() bool { return testutil.ToFloat64(sc.M.ObjectsIn) == 1 })
	for i := uint16(1); i <= 20; i++ {
		send(mallory, i, "forged")
		waitFor(t, func() bool { return src.foreign.Load() == uint64(i) })
		send(encoder, i, fmt.Sprint("encoder ", i))
		waitFor(t, func() bool { return testutil.ToFloat64(sc.M.ObjectsIn) == float64(i+1) })
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sc.Close()
	if len(sealed.recs) != 21 || src.foreign.Load() != 20 {
		t.Fatalf("sealed %d objects, %d foreign datagrams; want 21 and 20", len(sealed.recs), src.foreign.Load())
	}
}

// waitFor polls cond until it holds (the test's deadline bounds it).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}
