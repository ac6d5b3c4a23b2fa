// Package moqforward is the coordination service's MoQ publisher: a
// coord.Forwarder that writes accepted items on the group's tracks through a
// MoQ relay.
//
// One QUIC/MoQ session to the relay, re-dialled with exponential backoff
// when it breaks. On every (re)connection the forwarder ANNOUNCEs the
// namespace prefix (so the relay routes SUBSCRIBEs for [prefix..., group] of
// any group, including groups that do not exist yet: joiners subscribe
// before their first request) and each group it has forwarded for. Tracks:
//
//	[prefix..., group] / "request"  MoQ group = request seq,  object 0
//	[prefix..., group] / "commit"   MoQ group = commit epoch, object 0
//	[prefix..., group] / "welcome"  MoQ group = commit epoch, object 0
//	[prefix..., group] / "ack"      MoQ group = epoch, object = arrival order
//
// Publishers have LIVE semantics (no cache): an object written while nobody
// subscribes is gone. Members fill gaps from the CS archive (store.Archive,
// GET /v1/groups/{group}/commits/{epoch} etc.).
//
// A Forward* call fails while no session is up; the CS then keeps the item
// in its outbox and redelivers it.
package moqforward

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/moq"
)

// Track names (docs/coordination-service.md, "MoQ tracks").
const (
	TrackRequest = "request"
	TrackCommit  = "commit"
	TrackWelcome = "welcome"
	TrackAck     = "ack"
)

// DefaultPrefix is the namespace prefix used when Config.Prefix is empty.
var DefaultPrefix = []string{"moqsframe", "cs"}

// Namespace returns the track namespace of group: [prefix..., group].
func Namespace(prefix []string, group string) []string {
	return append(slices.Clone(prefix), group)
}

// ErrNotConnected is returned by Forward* while no relay session is up.
var ErrNotConnected = errors.New("moqforward: not connected to the relay")

// Config configures a Forwarder.
type Config struct {
	Relay  string     // relay UDP address, host:port
	Prefix []string   // namespace prefix; empty = DefaultPrefix
	MoQ    moq.Config // TLS / InsecureSkipVerify / sizes; OnSubscribe is set by the Forwarder
	// Certificate, if set, is presented to the relay as the CS's identity
	// (TLS client certificate issued by the deployment CA; the CS's name is
	// the one in it), so that a relay requiring mutual TLS admits the CS as
	// the publisher of the group tracks.
	Certificate *identity.Certificate
	// RelayRoots, if set, verifies the relay's certificate (the deployment
	// CA) instead of the system roots. It excludes MoQ.InsecureSkipVerify.
	RelayRoots *x509.CertPool
	Logger     *slog.Logger
	// MinBackoff and MaxBackoff bound the redial delay (defaults 100ms, 5s).
	MinBackoff, MaxBackoff time.Duration
}

// Forwarder implements coord.Forwarder over MoQ.
type Forwarder struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	sess      *moq.Session
	announced map[string]bool // groups announced on sess
	pubs      map[string]*moq.Publisher
	up        chan struct{} // closed while connected; replaced on disconnect
	connects  int
	ackMu     sync.Mutex
	ackSeq    map[string]ackCounter // group -> its newest acknowledged epoch (under ackMu)
}

var (
	_ coord.Forwarder    = (*Forwarder)(nil)
	_ coord.AckForwarder = (*Forwarder)(nil)
)

// New starts the Forwarder; it connects in the background.
func New(cfg Config) (*Forwarder, error) {
	if cfg.Relay == "" {
		return nil, errors.New("moqforward: Config.Relay is required")
	}
	if len(cfg.Prefix) == 0 {
		cfg.Prefix = DefaultPrefix
	}
	if len(cfg.Prefix) > 31 {
		return nil, errors.New("moqforward: namespace prefix too long (max 31 elements)")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.RelayRoots != nil && cfg.MoQ.InsecureSkipVerify {
		return nil, errors.New("moqforward: RelayRoots and MoQ.InsecureSkipVerify exclude each other")
	}
	if cfg.Certificate != nil || cfg.RelayRoots != nil {
		// Cloned so that the caller's MoQ.TLSConfig is never modified.
		tc := &tls.Config{MinVersion: tls.VersionTLS13}
		if cfg.MoQ.TLSConfig != nil {
			tc = cfg.MoQ.TLSConfig.Clone()
		}
		if cfg.Certificate != nil {
			tc.Certificates = []tls.Certificate{cfg.Certificate.TLS()}
		}
		if cfg.RelayRoots != nil {
			tc.RootCAs = cfg.RelayRoots
		}
		cfg.MoQ.TLSConfig = tc
	}
	f := &Forwarder{cfg: cfg, log: cfg.Logger, pubs: map[string]*moq.Publisher{}, announced: map[string]bool{}, up: make(chan struct{})}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.cfg.MoQ.OnSubscribe = f.onSubscribe
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.wg.Add(1)
	go f.loop()
	return f, nil
}

// WaitConnected blocks until a relay session is up.
func (f *Forwarder) WaitConnected(ctx context.Context) error {
	f.mu.Lock()
	up := f.up
	f.mu.Unlock()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Connects counts successful connections (tests, metrics).
func (f *Forwarder) Connects() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connects
}

// Close stops the forwarder and closes its session.
func (f *Forwarder) Close() error {
	f.cancel()
	f.mu.Lock()
	s := f.sess
	f.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
	f.wg.Wait()
	f.mu.Lock()
	for _, p := range f.pubs {
		_ = p.Close()
	}
	f.mu.Unlock()
	return nil
}

func (f *Forwarder) loop() {
	defer f.wg.Done()
	backoff := f.cfg.MinBackoff
	for f.ctx.Err() == nil {
		s, err := f.connect()
		if err != nil {
			f.log.Warn("relay connection failed; retrying", "relay", f.cfg.Relay, "in", backoff, "err", err)
			select {
			case <-f.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, f.cfg.MaxBackoff)
			continue
		}
		backoff = f.cfg.MinBackoff
		select {
		case <-f.ctx.Done():
			_ = s.Close()
		case <-s.Done():
			f.log.Warn("relay session ended; reconnecting", "relay", f.cfg.Relay)
		}
		f.mu.Lock()
		if f.sess == s {
			f.sess = nil
			f.up = make(chan struct{})
		}
		f.mu.Unlock()
	}
}

func (f *Forwarder) connect() (*moq.Session, error) {
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	s, err := moq.Dial(ctx, f.cfg.Relay, &f.cfg.MoQ)
	if err != nil {
		return nil, err
	}
	if err := s.Announce(ctx, f.cfg.Prefix); err != nil {
		_ = s.Close()
		return nil, err
	}
	f.mu.Lock()
	var groups []string
	for key := range f.pubs {
		g := groupOfKey(key)
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	f.mu.Unlock()
	for _, g := range groups {
		if err := s.Announce(ctx, Namespace(f.cfg.Prefix, g)); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	f.mu.Lock()
	f.sess = s
	f.announced = map[string]bool{}
	for _, g := range groups {
		f.announced[g] = true
	}
	f.connects++
	close(f.up)
	f.mu.Unlock()
	f.log.Info("connected to relay", "relay", f.cfg.Relay, "prefix", f.cfg.Prefix, "groups", len(groups))
	return s, nil
}

func pubKey(group, track string) string { return track + "\x00" + group }

func groupOfKey(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] == 0 {
			return key[i+1:]
		}
	}
	return key
}

func validTrack(t string) bool {
	return t == TrackRequest || t == TrackCommit || t == TrackWelcome || t == TrackAck
}

// publisher returns (creating) the shared Publisher of (group, track).
func (f *Forwarder) publisherLocked(group, track string) *moq.Publisher {
	k := pubKey(group, track)
	p, ok := f.pubs[k]
	if !ok {
		p = moq.NewPublisher(Namespace(f.cfg.Prefix, group), track, &f.cfg.MoQ)
		f.pubs[k] = p
	}
	return p
}

// onSubscribe serves SUBSCRIBEs the relay sends upstream for
// [prefix..., group] / {request,commit,welcome,ack}.
func (f *Forwarder) onSubscribe(_ *moq.Session, ns []string, track string) (*moq.Publisher, error) {
	if len(ns) != len(f.cfg.Prefix)+1 || !slices.Equal(ns[:len(f.cfg.Prefix)], f.cfg.Prefix) ||
		!wire.ValidGroupName(ns[len(ns)-1]) || !validTrack(track) {
		return nil, fmt.Errorf("%w: %q/%q", moq.ErrUnknownTrack, ns, track)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.publisherLocked(ns[len(ns)-1], track), nil
}

func (f *Forwarder) write(ctx context.Context, group, track string, num uint64, payload []byte) error {
	return f.writeObject(ctx, group, track, num, 0, payload)
}

func (f *Forwarder) writeObject(ctx context.Context, group, track string, num, object uint64, payload []byte) error {
	f.mu.Lock()
	s := f.sess
	p := f.publisherLocked(group, track)
	need := s != nil && !f.announced[group]
	f.mu.Unlock()
	if s == nil {
		return ErrNotConnected
	}
	if need {
		if err := s.Announce(ctx, Namespace(f.cfg.Prefix, group)); err != nil {
			return fmt.Errorf("moqforward: announce group %q: %w", group, err)
		}
		f.mu.Lock()
		if f.sess == s {
			f.announced[group] = true
		}
		f.mu.Unlock()
	}
	if err := p.WriteObject(num, 0, object, payload); err != nil {
		return fmt.Errorf("moqforward: %s/%s group %d: %w", group, track, num, err)
	}
	return nil
}

func (f *Forwarder) ForwardRequest(ctx context.Context, group string, seq uint64, req []byte) error {
	return f.write(ctx, group, TrackRequest, seq, req)
}

func (f *Forwarder) ForwardCommit(ctx context.Context, group string, epoch uint64, commit []byte) error {
	return f.write(ctx, group, TrackCommit, epoch, commit)
}

func (f *Forwarder) ForwardWelcome(ctx context.Context, group string, epoch uint64, welcome []byte) error {
	return f.write(ctx, group, TrackWelcome, epoch, welcome)
}

// ForwardAck publishes an EpochAck. The acks of one epoch share MoQ group
// = epoch, subgroup 0, with object IDs in arrival order: one stream per
// epoch and subscriber, not one per ack.
func (f *Forwarder) ForwardAck(ctx context.Context, group string, epoch uint64, _ uint32, ack []byte) error {
	// Held across the write, so object IDs reach the stream in order.
	f.ackMu.Lock()
	defer f.ackMu.Unlock()
	c := f.ackSeq[group]
	if c.epoch != epoch {
		c = ackCounter{epoch: epoch}
	}
	if err := f.writeObject(ctx, group, TrackAck, epoch, c.next, ack); err != nil {
		return err
	}
	c.next++
	if f.ackSeq == nil {
		f.ackSeq = map[string]ackCounter{}
	}
	f.ackSeq[group] = c
	return nil
}

// ackCounter numbers the acks of a group's newest epoch.
type ackCounter struct{ epoch, next uint64 }
