// Package relay is a MoQ (draft-11) relay: publishers ANNOUNCE namespaces
// to it, subscribers SUBSCRIBE through it. It forwards opaque payloads (SFrame
// ciphertext) and never needs a key.
//
// Fan-out: one upstream subscription per (namespace, track), shared by all
// downstream subscribers through one moq.Publisher. Every downstream
// subscriber has its own queue, bounded in objects and in bytes; when it is
// full, the object is
// dropped for that subscriber only and counted, and after MaxDrops drops the
// subscriber is disconnected (SUBSCRIBE_DONE "too far behind"). A slow
// subscriber therefore never stalls the upstream or the other subscribers.
//
// Relay trees: with Config.Upstreams, tracks nobody announced locally are
// subscribed from a parent relay (still one subscription per track), and
// local announcements are forwarded upward on behalf of the identity that
// made them (see Config.RelayIdentities and docs/relay.md).
//
// There is no cache and no FETCH: a subscriber receives objects from the
// moment its subscription is attached.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/moq"
)

// Config configures a Relay. Zero fields take defaults.
type Config struct {
	// Addr is the UDP listen address, e.g. "127.0.0.1:4443".
	Addr string
	// TLS holds the server certificate. Required.
	TLS *tls.Config
	// MaxObjectSize bounds objects in both directions (default 4 MiB).
	MaxObjectSize int
	// SubscriberQueue is the per-downstream-subscriber queue in objects
	// (default 1024).
	SubscriberQueue int
	// SubscriberQueueBytes bounds each downstream subscriber's queue in
	// payload bytes too (queued plus being written), so a slow subscriber
	// of large objects cannot make the relay hold SubscriberQueue ×
	// MaxObjectSize. Default moq.DefaultSubscriberQueueBytes (8 MiB) or
	// 2 × MaxObjectSize, whichever is larger; below MaxObjectSize is an
	// error.
	SubscriberQueueBytes int
	// WriteTimeout ends a downstream subscriber whose QUIC stream accepts
	// no data for this long (default moq.DefaultWriteTimeout, 10 s).
	WriteTimeout time.Duration
	// MaxDrops disconnects a subscriber after this many dropped objects
	// (default 1000; negative = never).
	MaxDrops int
	// HandshakeTimeout bounds QUIC + MoQ SETUP of incoming sessions
	// (default 10 s).
	HandshakeTimeout time.Duration
	// UpstreamTimeout bounds the upstream SUBSCRIBE (default 10 s).
	UpstreamTimeout time.Duration
	// IdleTimeout: an upstream subscription without downstream subscribers
	// for this long is ended (UNSUBSCRIBE upstream). Default 10 s.
	IdleTimeout time.Duration
	// Logger; defaults to slog.Default().
	Logger *slog.Logger

	// TrustAnchor turns on mTLS and ANNOUNCE authorization. The listener
	// then requests a client certificate and verifies any that is given
	// against these anchors (a bad one fails the handshake); a session's
	// identity is the certificate's name (moq.Session.PeerIdentity). Only
	// sessions with an identity may announce; a namespace belongs to its
	// first announcer's identity until that announcement is gone, and the
	// CS prefix to CSIdentity. Nil: no client certificates, anyone may
	// announce and the latest announcer of a namespace wins.
	TrustAnchor *identity.Verifier
	// CSPrefix is the namespace prefix that, under TrustAnchor, only
	// CSIdentity may announce (itself, anything under it, or any prefix of
	// it). Default DefaultCSPrefix.
	CSPrefix []string
	// CSIdentity is the coordination service's identity name. Default
	// DefaultCSIdentity.
	CSIdentity string
	// SubscribeNeedsCert, with TrustAnchor, refuses SUBSCRIBE from sessions
	// without an identity (SUBSCRIBE_ERROR unauthorized). Without it
	// anyone may subscribe: subscribers only ever see ciphertext.
	SubscribeNeedsCert bool

	// Upstreams are parent relays (relay trees, docs/relay.md): the relay
	// keeps a session to each, subscribes there to tracks of namespaces
	// nobody announced locally (one upstream subscription per track,
	// fanned out here), and forwards every local announcement to them, so a
	// publisher on any relay of the tree is reachable from any other.
	Upstreams []Upstream
	// UpstreamTLS is the client TLS config for upstream sessions: its
	// Certificates are presented (under the upstream's TrustAnchor the
	// identity must be in the upstream's RelayIdentities), its RootCAs
	// verify the upstream. Nil: no client certificate, system roots.
	UpstreamTLS *tls.Config
	// RelayIdentities, under TrustAnchor, are the identities of relays
	// allowed to announce on behalf of publishers they authenticated
	// (moq.AnnounceFor): such an ANNOUNCE is authorized, and its namespace
	// owned, as if the named announcer had sent it here. Any other
	// identity that names an announcer is refused (ReasonNotRelay).
	RelayIdentities []string
}

// Upstream is a parent relay and the namespaces it serves.
type Upstream struct {
	Addr string // UDP address
	// Namespaces are the namespaces (and everything under them) this
	// upstream serves and receives announcements for; empty: all.
	Namespaces [][]string
}

// serves reports whether u serves namespace.
func (u Upstream) serves(namespace []string) bool {
	if len(u.Namespaces) == 0 {
		return true
	}
	for _, p := range u.Namespaces {
		if len(p) <= len(namespace) && slices.Equal(p, namespace[:len(p)]) {
			return true
		}
	}
	return false
}

// Relay is a running relay.
type Relay struct {
	cfg    Config
	ln     *moq.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu            sync.Mutex
	sessions      map[*moq.Session]struct{}
	announcements map[string]announcement // by namespace key
	tracks        map[string]*track       // by moq.TrackKey
	upstreams     []*upstreamConn
	upstreamSess  map[*moq.Session]*upstreamConn // connected upstream sessions
	relayIDs      map[string]bool

	// Totals of sessions and tracks that are gone, so counters stay
	// monotonic.
	retired                                  totals
	sessionsTotal, upstreamFailures, objsIn  atomic.Uint64
	bytesIn, upstreamOversizeWhileForwarding atomic.Uint64
	auth                                     authCounters
	upstreamAnnounceFailures                 atomic.Uint64
	upstreamConnects                         atomic.Uint64
}

// upstreamConn is the session to one Config.Upstreams entry.
type upstreamConn struct {
	Upstream
	sess *moq.Session // guarded by Relay.mu; nil while disconnected
	// forwarded are the namespaces (nsKey) sess accepted from us and we
	// have not withdrawn; guarded by Relay.mu.
	forwarded map[string]bool
}

type announcement struct {
	namespace []string
	sess      *moq.Session
	owner     string // announcer's identity; "" without Config.TrustAnchor
	via       string // the relay identity that forwarded it, if any
}

type totals struct {
	objectsOut, bytesOut, droppedQueueFull, disconnects atomic.Uint64
	droppedQueueBytes                                   atomic.Uint64
	peakQueuedBytes                                     atomic.Int64 // max over retired tracks
	oversize, refused, streams, datagrams, creditWaits  atomic.Uint64
	quicLost, quicDropped                               atomic.Uint64
}

// track is one upstream subscription fanned out to downstream subscribers.
type track struct {
	key       string
	namespace []string
	name      string
	upstream  *moq.Session
	pub       *moq.Publisher
	ctx       context.Context
	cancel    context.CancelFunc
	idleSince time.Time // guarded by Relay.mu; zero while it has subscribers
}

// New listens on cfg.Addr. Call Serve to accept sessions.
func New(cfg Config) (*Relay, error) {
	if cfg.TLS == nil {
		return nil, errors.New("relay: Config.TLS is required (use moq.DevTLSConfig for a dev certificate)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxObjectSize <= 0 {
		cfg.MaxObjectSize = moq.DefaultMaxObjectSize
	}
	if cfg.SubscriberQueue <= 0 {
		cfg.SubscriberQueue = moq.DefaultSubscriberQueue
	}
	if cfg.SubscriberQueueBytes <= 0 {
		cfg.SubscriberQueueBytes = max(moq.DefaultSubscriberQueueBytes, 2*cfg.MaxObjectSize)
	}
	if cfg.SubscriberQueueBytes < cfg.MaxObjectSize {
		return nil, fmt.Errorf("relay: SubscriberQueueBytes (%d) is below MaxObjectSize (%d): a maximum-size object could never be queued; raise it or lower MaxObjectSize",
			cfg.SubscriberQueueBytes, cfg.MaxObjectSize)
	}
	if cfg.MaxDrops == 0 {
		cfg.MaxDrops = 1000
	}
	if cfg.MaxDrops < 0 {
		cfg.MaxDrops = 0
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Second
	}
	if cfg.SubscribeNeedsCert && cfg.TrustAnchor == nil {
		return nil, errors.New("relay: Config.SubscribeNeedsCert needs Config.TrustAnchor")
	}
	tlsConf := cfg.TLS
	if cfg.TrustAnchor != nil {
		if len(cfg.CSPrefix) == 0 {
			cfg.CSPrefix = DefaultCSPrefix
		}
		cfg.CSPrefix = append([]string(nil), cfg.CSPrefix...)
		if cfg.CSIdentity == "" {
			cfg.CSIdentity = DefaultCSIdentity
		}
		if !identity.ValidName(cfg.CSIdentity) {
			return nil, fmt.Errorf("relay: invalid CS identity %q", cfg.CSIdentity)
		}
		tlsConf = serverTLS(cfg.TLS, cfg.TrustAnchor)
	}
	for _, u := range cfg.Upstreams {
		if u.Addr == "" {
			return nil, errors.New("relay: an Upstream needs an Addr")
		}
		for _, ns := range u.Namespaces {
			if len(ns) == 0 || len(ns) > 32 {
				return nil, fmt.Errorf("relay: upstream %s: a namespace must have 1..32 elements", u.Addr)
			}
		}
	}
	if len(cfg.RelayIdentities) > 0 && cfg.TrustAnchor == nil {
		return nil, errors.New("relay: Config.RelayIdentities needs Config.TrustAnchor (without it any session may announce anything)")
	}
	r := &Relay{
		cfg:           cfg,
		sessions:      map[*moq.Session]struct{}{},
		announcements: map[string]announcement{},
		tracks:        map[string]*track{},
		upstreamSess:  map[*moq.Session]*upstreamConn{},
		relayIDs:      map[string]bool{},
	}
	for _, id := range cfg.RelayIdentities {
		if !identity.ValidName(id) {
			return nil, fmt.Errorf("relay: invalid relay identity %q", id)
		}
		r.relayIDs[id] = true
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	ln, err := moq.Listen(cfg.Addr, tlsConf, r.moqConfig())
	if err != nil {
		return nil, err
	}
	r.ln = ln
	r.wg.Add(1)
	go r.janitor()
	for _, u := range cfg.Upstreams {
		uc := &upstreamConn{Upstream: u}
		r.upstreams = append(r.upstreams, uc)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.runUpstream(uc)
		}()
	}
	return r, nil
}

// janitor ends upstream subscriptions nobody downstream uses any more.
func (r *Relay) janitor() {
	defer r.wg.Done()
	tick := time.NewTicker(r.cfg.IdleTimeout / 4)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
			// Not the tick's time: under load the tick may have waited, and
			// an idleSince before the last subscriber left would end the
			// subscription early.
			now := time.Now()
			r.mu.Lock()
			for key, t := range r.tracks {
				switch {
				case t.pub.Subscribers() > 0:
					t.idleSince = time.Time{}
				case t.idleSince.IsZero():
					t.idleSince = now
				case now.Sub(t.idleSince) >= r.cfg.IdleTimeout:
					delete(r.tracks, key)
					t.cancel() // pump unsubscribes upstream and retires the track
					r.cfg.Logger.Info("ending idle upstream subscription", "namespace", strings.Join(t.namespace, "/"), "track", t.name)
				}
			}
			r.mu.Unlock()
		}
	}
}

func (r *Relay) moqConfig() *moq.Config {
	return &moq.Config{
		MaxObjectSize:        r.cfg.MaxObjectSize,
		HandshakeTimeout:     r.cfg.HandshakeTimeout,
		SubscriberQueue:      r.cfg.SubscriberQueue,
		SubscriberQueueBytes: r.cfg.SubscriberQueueBytes,
		DropWhenFull:         true,
		MaxDrops:             r.cfg.MaxDrops,
		WriteTimeout:         r.cfg.WriteTimeout,
		OnAnnounce:           r.onAnnounce,
		OnRelayedAnnounce:    r.onRelayedAnnounce,
		OnUnannounce:         r.onUnannounce,
		OnSubscribe:          r.onSubscribe,
		Logger:               r.cfg.Logger,
	}
}

// Addr is the relay's UDP address.
func (r *Relay) Addr() net.Addr { return r.ln.Addr() }

// Serve accepts sessions until ctx is done or Close is called.
func (r *Relay) Serve(ctx context.Context) error {
	for {
		s, err := r.ln.Accept(ctx)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil || r.ctx.Err() != nil {
				return nil
			}
			return err
		}
		r.mu.Lock()
		if r.ctx.Err() != nil {
			r.mu.Unlock()
			_ = s.Close()
			return nil
		}
		r.sessions[s] = struct{}{}
		r.sessionsTotal.Add(1)
		r.wg.Add(1)
		r.mu.Unlock()
		r.cfg.Logger.Info("session up", "remote", s.RemoteAddr().String(), "identity", s.PeerIdentity())
		go func() {
			defer r.wg.Done()
			select {
			case <-s.Done():
			case <-r.ctx.Done():
			}
			r.dropSession(s)
		}()
	}
}

// dropSession forgets a session, its announcements, and closes it. Tracks
// whose upstream it was end by themselves (their Subscription fails).
func (r *Relay) dropSession(s *moq.Session) {
	_ = s.Close()
	st := s.Stats()
	r.mu.Lock()
	delete(r.sessions, s)
	var gone []upstreamWithdrawal
	for k, a := range r.announcements {
		if a.sess == s {
			delete(r.announcements, k)
			gone = append(gone, r.withdrawUpstreamLocked(k, a.namespace)...)
		}
	}
	// Under r.mu so a metrics snapshot never sees the session twice or not at all.
	r.retired.oversize.Add(st.Oversize)
	r.retired.refused.Add(st.StreamsRefused)
	r.retired.streams.Add(st.StreamsAccepted)
	r.retired.datagrams.Add(st.DatagramsDiscarded)
	r.retired.creditWaits.Add(st.StreamCreditWaits)
	r.retired.quicLost.Add(st.PacketsLost)
	r.retired.quicDropped.Add(st.PacketsDropped)
	r.unannounceUpstreamAsyncLocked(gone)
	r.mu.Unlock()
	r.cfg.Logger.Info("session down", "remote", s.RemoteAddr().String())
}

// Close stops accepting, closes every session and waits for the relay's
// goroutines.
func (r *Relay) Close() error {
	r.cancel()
	err := r.ln.Close()
	r.wg.Wait()
	return err
}

func nsKey(namespace []string) string { return moq.TrackKey(namespace, "") }

// onAnnounce records the announcing session for namespace. Runs on the
// session's control goroutine: no blocking. Without Config.TrustAnchor the
// latest announcer wins; with it, see authorizeAnnounceLocked.
func (r *Relay) onAnnounce(s *moq.Session, namespace []string) error {
	return r.announce(s, namespace, "", false)
}

// onRelayedAnnounce is onAnnounce for an ANNOUNCE a relay forwarded on
// behalf of announcer (moq.AnnounceFor).
func (r *Relay) onRelayedAnnounce(s *moq.Session, namespace []string, announcer string) error {
	return r.announce(s, namespace, announcer, true)
}

func (r *Relay) announce(s *moq.Session, namespace []string, announcer string, relayed bool) error {
	ns := strings.Join(namespace, "/")
	if len(namespace) == 0 || len(namespace) > 32 {
		r.auth.countAnnounce(ReasonInvalid)
		return &RefusedError{Reason: ReasonInvalid, Msg: fmt.Sprintf("namespace must have 1..32 elements, got %d", len(namespace))}
	}
	id := s.PeerIdentity()
	owner, via := id, ""
	key := nsKey(namespace)
	r.mu.Lock()
	// A session whose connection is already closed may still have an
	// ANNOUNCE in flight; dropSession closes the connection before it takes
	// r.mu, so checking here means a recorded announcement is always
	// removed by dropSession (otherwise it would hold the namespace
	// forever).
	select {
	case <-s.Done():
		r.mu.Unlock()
		return moq.ErrSessionClosed
	default:
	}
	if r.upstreamSess[s] != nil {
		// Announcements flow up the tree only; routing SUBSCRIBEs back up
		// to where they came from would loop.
		r.mu.Unlock()
		r.auth.countAnnounce(ReasonInvalid)
		return &RefusedError{Reason: ReasonInvalid, Msg: "this relay does not take announcements from its upstream"}
	}
	if r.cfg.TrustAnchor != nil {
		var err error
		if relayed {
			owner, via, err = r.relayedOwner(id, announcer)
		}
		if err == nil {
			err = r.authorizeAnnounceLocked(owner, namespace)
		}
		if err != nil {
			r.mu.Unlock()
			var re *RefusedError
			held := ""
			if errors.As(err, &re) {
				r.auth.countAnnounce(re.Reason)
				held = re.owner
			}
			r.cfg.Logger.Warn("announce refused", "namespace", ns, "identity", id, "announcer", announcer, "remote", s.RemoteAddr().String(),
				"held_by", held, "err", err)
			return err
		}
	} else {
		owner = ""
	}
	prev, had := r.announcements[key]
	a := announcement{namespace: append([]string(nil), namespace...), sess: s, owner: owner, via: via}
	r.announcements[key] = a
	ups := r.connectedUpstreamsLocked(namespace)
	r.mu.Unlock()
	if had && prev.sess != s && r.cfg.TrustAnchor != nil {
		// Same identity from a new session (a reconnect, or a publisher
		// that moved to another edge relay): new SUBSCRIBEs go here; tracks
		// already subscribed upstream on the old session end with it.
		r.auth.takeovers.Add(1)
		r.cfg.Logger.Info("announce taken over by a new session of the same identity", "namespace", ns, "identity", owner,
			"remote", s.RemoteAddr().String(), "previous", prev.sess.RemoteAddr().String())
	}
	r.cfg.Logger.Info("announce", "namespace", ns, "identity", owner, "via", via, "remote", s.RemoteAddr().String())
	for _, u := range ups {
		r.forwardAnnounceAsync(u, a)
	}
	return nil
}

// relayedOwner decides who owns an ANNOUNCE that session identity id sent
// on behalf of announcer: the announcer if id is a configured relay
// identity and announcer a valid name; refused otherwise.
func (r *Relay) relayedOwner(id, announcer string) (owner, via string, err error) {
	if id == "" || !r.relayIDs[id] {
		return "", "", &RefusedError{Reason: ReasonNotRelay,
			Msg: "only the relay identities this relay is configured with may announce on behalf of another identity"}
	}
	if announcer == "" {
		return id, "", nil
	}
	if !identity.ValidName(announcer) {
		return "", "", &RefusedError{Reason: ReasonInvalid, Msg: "the announcer parameter is not a valid identity name"}
	}
	return announcer, id, nil
}

// onUnannounce forgets namespace if s announced it (a peer that took the
// namespace over keeps it).
func (r *Relay) onUnannounce(s *moq.Session, namespace []string) {
	key := nsKey(namespace)
	r.mu.Lock()
	a, ok := r.announcements[key]
	if ok && a.sess == s {
		delete(r.announcements, key)
		r.unannounceUpstreamAsyncLocked(r.withdrawUpstreamLocked(key, a.namespace))
	}
	r.mu.Unlock()
	if ok && a.sess == s {
		r.cfg.Logger.Info("unannounce", "namespace", strings.Join(namespace, "/"), "identity", a.owner, "remote", s.RemoteAddr().String())
	}
}

// announcerFor finds the session that announced namespace or its longest
// announced prefix. Called with r.mu held.
func (r *Relay) announcerFor(namespace []string) *moq.Session {
	for n := len(namespace); n > 0; n-- {
		if a, ok := r.announcements[nsKey(namespace[:n])]; ok {
			return a.sess
		}
	}
	return nil
}

// onSubscribe returns the shared Publisher for (namespace, trackName),
// creating it and its upstream subscription on first use. Runs on the
// downstream session's control goroutine: the upstream SUBSCRIBE is sent
// from a new goroutine, so the downstream SUBSCRIBE_OK precedes the upstream
// one and an upstream refusal arrives downstream as SUBSCRIBE_DONE.
func (r *Relay) onSubscribe(s *moq.Session, namespace []string, trackName string) (*moq.Publisher, error) {
	r.mu.Lock()
	fromUpstream := r.upstreamSess[s] != nil
	r.mu.Unlock()
	// An upstream relay is trusted by configuration (its certificate was
	// verified when this relay dialed it).
	if r.cfg.SubscribeNeedsCert && s.PeerIdentity() == "" && !fromUpstream {
		r.auth.subscribeUnauthenticated.Add(1)
		r.cfg.Logger.Warn("subscribe refused", "namespace", strings.Join(namespace, "/"), "track", trackName,
			"remote", s.RemoteAddr().String(), "reason", ReasonUnauthenticated)
		return nil, &RefusedError{Reason: ReasonUnauthenticated,
			Msg: "subscribing needs a client certificate issued by the relay's trust anchor"}
	}
	key := moq.TrackKey(namespace, trackName)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return nil, errors.New("relay shutting down")
	}
	if t, ok := r.tracks[key]; ok {
		if fromUpstream && r.upstreamSess[t.upstream] != nil {
			// Serving it would send the upstream its own objects back.
			return nil, fmt.Errorf("%w: %q is not announced below this relay", moq.ErrUnknownTrack, strings.Join(namespace, "/"))
		}
		t.idleSince = time.Time{} // a subscriber is about to attach
		return t.pub, nil
	}
	// Local announcements first; then, for SUBSCRIBEs from below only, an
	// upstream relay that serves the namespace (a SUBSCRIBE from upstream
	// never goes back up: that would loop).
	up := r.announcerFor(namespace)
	if up == nil && !fromUpstream {
		up = r.upstreamForLocked(namespace)
	}
	if up == nil {
		return nil, fmt.Errorf("%w: no publisher announced %q", moq.ErrUnknownTrack, strings.Join(namespace, "/"))
	}
	t := &track{
		key:       key,
		namespace: append([]string(nil), namespace...),
		name:      trackName,
		upstream:  up,
		pub:       moq.NewPublisher(namespace, trackName, r.moqConfig()),
	}
	t.ctx, t.cancel = context.WithCancel(r.ctx)
	r.tracks[key] = t
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.pump(t)
	}()
	return t.pub, nil
}

// pump subscribes upstream and forwards every object, IDs unchanged, to the
// track's Publisher (which never blocks: per-subscriber queues drop).
func (r *Relay) pump(t *track) {
	defer r.retireTrack(t)
	defer t.cancel()
	ctx, cancel := context.WithTimeout(t.ctx, r.cfg.UpstreamTimeout)
	sub, err := t.upstream.Subscribe(ctx, t.namespace, t.name)
	cancel()
	if err != nil {
		r.upstreamFailures.Add(1)
		r.cfg.Logger.Warn("upstream subscribe failed", "namespace", strings.Join(t.namespace, "/"), "track", t.name, "err", err)
		return
	}
	defer sub.Close()
	for {
		obj, err := sub.ReadObject(t.ctx)
		if err != nil {
			r.cfg.Logger.Info("upstream ended", "namespace", strings.Join(t.namespace, "/"), "track", t.name, "err", err)
			return
		}
		r.objsIn.Add(1)
		r.bytesIn.Add(uint64(len(obj.Payload)))
		if err := t.pub.Forward(obj); err != nil {
			// Only oversize can fail here; the receive guard already refuses
			// such objects, so this is defensive.
			r.upstreamOversizeWhileForwarding.Add(1)
		}
	}
}

func (r *Relay) retireTrack(t *track) {
	// Sends SUBSCRIBE_DONE to the downstream subscribers after flushing.
	_ = t.pub.Close()
	// Let the writers flush before sampling the final counters.
	deadline := time.Now().Add(2 * time.Second)
	for t.pub.Subscribers() > 0 && time.Now().Before(deadline) && r.ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	st := t.pub.Stats()
	r.mu.Lock()
	if r.tracks[t.key] == t {
		delete(r.tracks, t.key)
	}
	r.retired.objectsOut.Add(st.ObjectsOut)
	r.retired.bytesOut.Add(st.BytesOut)
	r.retired.droppedQueueFull.Add(st.Dropped - st.DroppedBytes)
	r.retired.droppedQueueBytes.Add(st.DroppedBytes)
	if st.PeakQueuedBytes > r.retired.peakQueuedBytes.Load() {
		r.retired.peakQueuedBytes.Store(st.PeakQueuedBytes) // under r.mu
	}
	r.retired.disconnects.Add(st.Disconnected)
	r.mu.Unlock()
}
