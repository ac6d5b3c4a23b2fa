// Package sidecar turns plaintext MoQ tracks (or RTP from an encoder) into
// SFrame tracks and back, so that MoQ relays carry only ciphertext. Every
// object is sealed by a pipeline stage with its MoQ identity bound as SFrame
// metadata. cmd/sframe-sidecar wires it to flags, a relay and /metrics.
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/moqsframe/moqsframe/pipeline"
	"github.com/moqsframe/moqsframe/sframe"
)

// Mode says which way a sidecar works.
type Mode int

const (
	Encrypt Mode = iota // plaintext in, SFrame out
	Decrypt             // SFrame in, plaintext out
)

func (m Mode) String() string {
	if m == Encrypt {
		return "encrypt"
	}
	return "decrypt"
}

// Sink receives processed objects: a relay publisher, a file, RTP.
type Sink interface {
	WriteObject(track string, group, subgroup, object uint64, payload []byte) error
}

// Config configures a Sidecar.
type Config struct {
	Mode      Mode
	Namespace []string // of every track the sidecar handles
	Keys      KeySource
	Sink      Sink
	Pipeline  pipeline.Config
	// MaxObjectSize bounds input objects; larger ones are dropped and
	// counted. Default 4 MiB.
	MaxObjectSize int
	// LossWindow (decrypt) is how many counters a sender's missing object
	// is waited for before it is counted lost (Metrics.Lost); give it the
	// receivers' replay window. Default DefaultReplayWindow.
	LossWindow int
	// Metrics counts the sidecar's objects (NewMetrics). Default:
	// NewMetrics(nil), registered nowhere.
	Metrics *Metrics
	Logger  *slog.Logger // default: slog.Default()
}

// Sidecar seals or opens the objects submitted to it and writes the results
// to its sink, in order per track.
type Sidecar struct {
	cfg   Config
	log   *slog.Logger
	stage *pipeline.Stage
	M     *Metrics
	loss  *lossTracker // decrypt only

	mu     sync.Mutex
	tracks map[string]*pipeline.Track

	bufs *pipeline.Buffers // payload and output buffers, reused LIFO
}

// ErrTooLarge means an input object exceeds Config.MaxObjectSize.
var ErrTooLarge = errors.New("sidecar: object too large")

// New starts a sidecar's pipeline stage.
func New(cfg Config) (*Sidecar, error) {
	if cfg.Keys == nil || cfg.Sink == nil {
		return nil, errors.New("sidecar: Config needs Keys and Sink")
	}
	if len(cfg.Namespace) == 0 {
		return nil, errors.New("sidecar: Config needs a Namespace")
	}
	if cfg.MaxObjectSize <= 0 {
		cfg.MaxObjectSize = 4 << 20
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Sidecar{
		cfg: cfg, log: cfg.Logger, tracks: map[string]*pipeline.Track{},
		bufs: pipeline.NewBuffers(4096, 2048),
		M:    cfg.Metrics,
	}
	if cfg.Mode == Encrypt {
		s.stage = pipeline.NewSealStage(cfg.Pipeline, s.emit)
	} else {
		if cfg.LossWindow <= 0 {
			cfg.LossWindow = DefaultReplayWindow
		}
		s.loss = newLossTracker(cfg.LossWindow, func(n uint64) { s.M.Lost.Add(float64(n)) })
		s.stage = pipeline.NewOpenStage(cfg.Pipeline, s.emit)
	}
	return s, nil
}

// track returns the pipeline track for name, creating it with its keys.
func (s *Sidecar) track(name string) (*pipeline.Track, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tracks[name]; ok {
		return t, nil
	}
	t, err := pipeline.NewTrack(s.cfg.Namespace, name)
	if err != nil {
		return nil, err
	}
	if s.cfg.Mode == Encrypt {
		t.Sealer, err = s.cfg.Keys.Sealer(t)
	} else {
		t.Opener, err = s.cfg.Keys.Opener(t)
	}
	if err != nil {
		return nil, fmt.Errorf("sidecar: keys for track %s: %w", name, err)
	}
	s.tracks[name] = t
	return t, nil
}

// Submit queues one object of the named track. The payload is copied, so
// the caller may reuse it. Submit waits while the pipeline is full
// (backpressure); it fails for oversized objects, after Close, or when ctx
// ends, counting the drop.
func (s *Sidecar) Submit(ctx context.Context, trackName string, group, subgroup, object uint64, payload []byte) error {
	arrived := time.Now()
	s.M.ObjectsIn.Inc()
	s.M.BytesIn.Add(float64(len(payload)))
	if len(payload) > s.cfg.MaxObjectSize {
		s.M.Drops.Inc()
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), s.cfg.MaxObjectSize)
	}
	t, err := s.track(trackName)
	if err != nil {
		s.M.Drops.Inc()
		return err
	}
	in := append(s.bufs.Get(len(payload)), payload...)
	o := pipeline.Object{Track: t, GroupID: group, SubgroupID: subgroup, ObjectID: object,
		Payload: in, Out: s.bufs.Get(len(payload) + sframe.MaxHeaderLen + 16), Arrived: arrived}
	if err := s.stage.Submit(ctx, o); err != nil {
		s.bufs.Put(in)
		s.bufs.Put(o.Out)
		s.M.Drops.Inc()
		return err
	}
	return nil
}

// emit runs on a pipeline worker with a processed batch.
func (s *Sidecar) emit(batch []pipeline.Object) {
	for i := range batch {
		o := &batch[i]
		switch {
		case o.Err == nil:
			if s.loss != nil {
				if h, _, err := sframe.ParseHeader(o.Payload); err == nil {
					s.loss.Observe(o.Track.Name(), h)
				}
			}
			if err := s.cfg.Sink.WriteObject(o.Track.Name(), o.GroupID, o.SubgroupID, o.ObjectID, o.Out); err != nil {
				s.M.SinkErrors.Inc()
				s.log.Debug("sink refused object", "track", o.Track.Name(), "group", o.GroupID, "object", o.ObjectID, "err", err)
			} else {
				s.M.ObjectsOut.Inc()
				s.M.BytesOut.Add(float64(len(o.Out)))
				s.M.Latency.Observe(time.Since(o.Arrived).Seconds())
			}
		case errors.Is(o.Err, sframe.ErrReplay):
			// A publisher replaying its reconnect buffer resends what may
			// have arrived already; an attacker replaying is refused the same.
			s.M.Duplicates.Inc()
			s.log.Debug("object already received or too old: dropped", "track", o.Track.Name(), "group", o.GroupID, "object", o.ObjectID)
		case errors.Is(o.Err, sframe.ErrAuthentication):
			s.M.AuthFailures.Inc()
			s.M.Errors.Inc()
			s.log.Warn("object failed authentication: dropped", "track", o.Track.Name(), "group", o.GroupID, "object", o.ObjectID)
		default:
			s.M.Errors.Inc()
			s.log.Warn("object dropped", "mode", s.cfg.Mode, "track", o.Track.Name(), "group", o.GroupID, "object", o.ObjectID, "err", o.Err)
		}
		s.bufs.Put(o.Payload)
		s.bufs.Put(o.Out)
	}
}

// Close stops accepting objects and returns once every queued object has
// been processed and written to the sink. A decrypting sidecar then counts
// the objects still missing from each sender's sequence as lost.
func (s *Sidecar) Close() {
	s.stage.Close()
	if s.loss != nil {
		s.loss.Close()
	}
}

// Missing returns how many objects are missing from their senders'
// sequences but may still arrive (decrypt; 0 when encrypting).
func (s *Sidecar) Missing() uint64 {
	if s.loss == nil {
		return 0
	}
	return s.loss.Missing()
}

// Stats returns the pipeline stage's counters.
func (s *Sidecar) Stats() pipeline.Stats { return s.stage.Stats() }

// Tee writes every object to each of its sinks, so a decrypting sidecar
// can feed a file, local subscribers and RTP at once. It returns the first
// error, after trying every sink.
type Tee []Sink

// WriteObject writes to every sink.
func (t Tee) WriteObject(track string, group, subgroup, object uint64, payload []byte) error {
	var first error
	for _, s := range t {
		if err := s.WriteObject(track, group, subgroup, object, payload); err != nil && first == nil {
			first = err
		}
	}
	return first
}
