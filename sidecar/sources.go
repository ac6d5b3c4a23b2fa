package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moqsframe/moqsframe/moq"
	"github.com/moqsframe/moqsframe/rtpingest"
)

// Codec names an RTP payload format the sidecar ingests.
type Codec string

const (
	H264 Codec = "h264"
	Opus Codec = "opus"
)

// RTPSource reads RTP from a UDP socket, assembles frames and submits one
// MoQ object per frame to the sidecar: a new group at each H.264 keyframe,
// or every AudioGroupFrames Opus frames (default 50: one second of 20 ms
// frames).
//
// The input takes the datagrams of one sender (see Allow, Quiet); those of
// any other are dropped and counted (sidecar_rtp_<track>_foreign_total).
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

	foreign atomic.Uint64
}

type depacketizer interface {
	Push(*rtp.Packet) (rtpingest.Frame, bool, error)
	Stats() rtpingest.Stats
}

// Run reads until ctx ends or the socket is closed. Unless reg is nil, the
// source's RTP counters (sidecar_rtp_<track>_packets_total, _lost_total,
// _frames_dropped_total) are registered with it while Run runs.
func (r *RTPSource) Run(ctx context.Context, reg prometheus.Registerer) error {
	var d depacketizer
	g := rtpingest.Grouper{}
	switch r.Codec {
	case H264:
		d = &rtpingest.H264Depacketizer{}
	case Opus:
		d = &rtpingest.OpusDepacketizer{}
		g.MaxGroupFrames = r.AudioGroupFrames
		if g.MaxGroupFrames <= 0 {
			g.MaxGroupFrames = 50
		}
	default:
		return fmt.Errorf("sidecar: unknown codec %q (want h264 or opus)", r.Codec)
	}
	if reg != nil {
		c := rtpCollector(r.Track, d.Stats, r.foreign.Load)
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
	buf := make([]byte, 65536)
	var p rtp.Packet
	for {
		n, from, err := r.Conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if !lock.admit(from, time.Now()) {
			r.foreign.Add(1)
			continue
		}
		if p.Unmarshal(buf[:n]) != nil {
			r.Sidecar.M.Drops.Inc()
			continue
		}
		f, ok, _ := d.Push(&p)
		if !ok {
			continue
		}
		group, object := g.Next(f.Keyframe)
		if err := r.Sidecar.Submit(ctx, r.Track, group, 0, object, f.Data); err != nil && ctx.Err() != nil {
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
