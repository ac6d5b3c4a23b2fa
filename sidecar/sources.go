package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moqsframe/moqsframe/moq"
	"github.com/moqsframe/moqsframe/rtpingest"
)

// Codec names an RTP payload format the sidecar ingests and sends; the
// values are rtpingest's and rtpegress's.
type Codec string

const (
	H264 Codec = "h264" // RFC 6184
	H265 Codec = "h265" // RFC 7798
	VP8  Codec = "vp8"  // RFC 7741
	VP9  Codec = "vp9"  // RFC 9628
	Opus Codec = "opus" // RFC 7587
)

// clockRate is the codec's RTP clock in Hz.
func (c Codec) clockRate() float64 {
	if c == Opus {
		return 48000
	}
	return 90000
}

// RTPSource reads RTP from a UDP socket, assembles frames (rtpingest) and
// submits one MoQ object per frame to the sidecar: a new group at each
// video keyframe, or every AudioGroupFrames Opus frames (default 50: one
// second of 20 ms frames).
//
// The input takes the datagrams of one sender (see Allow, Quiet); those of
// any other are dropped and counted. Every datagram read ends in exactly one
// outcome counter (sidecar_rtp_<track>_datagrams_total{outcome}) or, for a
// moment, in the buffered gauge: they add up to
// sidecar_rtp_<track>_packets_total.
type RTPSource struct {
	Conn             net.PacketConn
	Track            string
	Codec            Codec
	AudioGroupFrames int
	Sidecar          *Sidecar
	// Allow is the one sender taken (port 0: any port of its host). Zero:
	// the first sender, until it has been quiet for Quiet.
	Allow netip.AddrPort
	// Quiet is how long the first sender may be silent before another
	// takes its place; default DefaultSourceQuiet.
	Quiet time.Duration

	stats       atomic.Pointer[rtpingest.Receiver]
	otherSender atomic.Uint64
}

// Stats returns the input's counters: the receiver's, plus the datagrams
// refused for coming from another sender.
func (r *RTPSource) Stats() (st rtpingest.Stats, otherSender uint64) {
	if rc := r.stats.Load(); rc != nil {
		st = rc.Stats()
	}
	return st, r.otherSender.Load()
}

// Run reads until ctx ends or the socket is closed. Unless reg is nil, the
// source's RTP counters are registered with it while Run runs.
func (r *RTPSource) Run(ctx context.Context, reg prometheus.Registerer) error {
	rc, err := rtpingest.NewReceiver(rtpingest.Config{Codec: rtpingest.Codec(r.Codec), AudioGroupFrames: r.AudioGroupFrames})
	if err != nil {
		return fmt.Errorf("sidecar: RTP input of track %s: %w", r.Track, err)
	}
	r.stats.Store(rc)
	if reg != nil {
		c := rtpCollector(r.Track, r.Stats)
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("sidecar: RTP metrics of track %s: %w", r.Track, err)
		}
		defer reg.Unregister(c)
	}
	stop := context.AfterFunc(ctx, func() { r.Conn.Close() })
	defer stop()
	lock := sourceLock{allow: r.Allow, quiet: r.Quiet}
	if lock.quiet <= 0 {
		lock.quiet = DefaultSourceQuiet
	}
	submit := func(ctx context.Context) error {
		for f, ok := rc.Next(); ok; f, ok = rc.Next() {
			if err := r.Sidecar.Submit(ctx, r.Track, f.Group, 0, f.Object, f.Data); err != nil && ctx.Err() != nil {
				return err
			}
		}
		return nil
	}
	buf := make([]byte, 65536)
	for {
		n, from, err := r.Conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				// The end of input: what the reorder window holds is
				// released, the frame in assembly finished.
				rc.Flush()
				submit(context.WithoutCancel(ctx))
				return nil
			}
			return err
		}
		if !lock.admit(from, time.Now()) {
			r.otherSender.Add(1)
			continue
		}
		_ = rc.Push(buf[:n]) // a malformed datagram is counted by the receiver; nothing else is lost
		if submit(ctx) != nil {
			return nil
		}
	}
}

// SubscribeInto subscribes to tracks of namespace through client and
// submits every object to the sidecar with its IDs unchanged: the input of
// an encrypting sidecar fed by a plaintext MoQ publisher, and of every
// decrypting sidecar.
func SubscribeInto(ctx context.Context, client *RelayClient, namespace []string, tracks []string, s *Sidecar) {
	for _, t := range tracks {
		client.Subscribe(namespace, t, func(o moq.Object) {
			s.Submit(ctx, t, o.GroupID, o.SubgroupID, o.ObjectID, o.Payload)
		})
	}
}

// LocalServer serves tracks to local MoQ subscribers, for a decrypting
// sidecar that hands plaintext to a media server or player.
type LocalServer struct {
	ln   *moq.Listener
	cfg  moq.Config
	pubs *publisherSet
}

// ListenLocal listens for local subscribers at addr with a development
// certificate (loopback use).
func ListenLocal(addr string, cfg *moq.Config) (*LocalServer, error) {
	tlsConf, err := moq.DevTLSConfig("localhost", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	s := &LocalServer{pubs: &publisherSet{m: map[string]*moq.Publisher{}}}
	if cfg != nil {
		s.cfg = *cfg
	}
	s.cfg.OnSubscribe = s.pubs.lookup
	if s.ln, err = moq.Listen(addr, tlsConf, &s.cfg); err != nil {
		return nil, err
	}
	go func() { // sessions serve themselves; keep accepting until closed
		for {
			if _, err := s.ln.Accept(context.Background()); err != nil {
				return
			}
		}
	}()
	return s, nil
}

// Addr is the listening address.
func (s *LocalServer) Addr() net.Addr { return s.ln.Addr() }

// Publisher returns the publisher of (namespace, track).
func (s *LocalServer) Publisher(namespace []string, track string) *moq.Publisher {
	return s.pubs.get(namespace, track, &s.cfg)
}

// Close stops listening and ends every track.
func (s *LocalServer) Close() error {
	s.pubs.closeAll()
	return s.ln.Close()
}
