package moq

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mengelbart/moqtransport"
	"github.com/quic-go/quic-go"

	"github.com/moqsframe/moqsframe/identity"
)

// SessionStats are connection-level counters of the guards.
type SessionStats struct {
	StreamsAccepted    uint64 // incoming data streams
	StreamsRefused     uint64 // stopped for bad framing / extension headers
	Oversize           uint64 // stopped for an object above MaxObjectSize
	DatagramsDiscarded uint64 // datagrams are not used; see ReceiveDatagram
	StreamCreditWaits  uint64 // times OpenSubgroup had to wait for stream credit
	StaleUnsubscribes  uint64 // UNSUBSCRIBE/SUBSCRIBE_UPDATE/FETCH_CANCEL for ended requests, dropped
	StaleUnannounces   uint64 // UNANNOUNCE for namespaces the peer did not announce (or withdrew), dropped

	// QUIC-level losses, which QUIC repairs by retransmission: no object
	// is lost, but the objects behind a lost packet on its stream wait
	// for the repair while other streams' objects go on.
	//
	// PacketsLost counts our packets QUIC declared lost (RFC 9002 §6.1)
	// and sent again. PacketsDropped counts packets from the peer that
	// quic-go discarded before processing them; on a saturated CPU these
	// are mostly its per-connection receive queue (256 packets) being full,
	// and they come back as the peer's PacketsLost.
	PacketsLost    uint64
	PacketsDropped uint64
}

type sessionCounters struct {
	streamsAccepted, streamsRefused, oversize, datagramsDiscarded, streamCreditWaits atomic.Uint64
	staleUnsubscribes, staleUnannounces                                              atomic.Uint64
}

// Session is one MoQ session (one QUIC connection). Either end may publish
// and subscribe. All methods are safe for concurrent use.
type Session struct {
	cfg  *Config
	conn *quic.Conn
	ms   *moqtransport.Session
	ctx  context.Context // done when the QUIC connection is closed

	// peerIdentity is the name in the peer's verified certificate ("" if
	// none); fixed at the handshake.
	peerIdentity string

	// openMu serialises opening subgroup streams so that lastOpened,
	// which guardedConn.OpenUniStream sets, is the stream of the
	// OpenSubgroup call in progress (see openSubgroup).
	openMu     sync.Mutex
	lastOpened atomic.Pointer[sendStream]

	mu             sync.Mutex
	publishers     map[string]*Publisher
	inbounds       map[uint64]*inbound // by track alias of our subscriptions
	aliasByRequest map[uint64]uint64
	subscriptions  map[*Subscription]struct{}
	shut           bool                   // Close has begun; no new goroutines
	live           map[uint64]*subscriber // accepted incoming SUBSCRIBEs by request ID

	ctl *controlStream // set once the control stream exists (tests use it)

	// AnnounceFor's parameter on the way out, and the announcer parameter
	// of incoming ANNOUNCEs by request ID until handle takes it.
	announceForSem    chan struct{}
	pendingAnnounce   *pendingAnnouncer
	relayedAnnouncers map[uint64]string
	// announceMu: Announce holds it shared, Unannounce exclusively.
	announceMu sync.RWMutex
	// peerAnnounced counts the peer's ANNOUNCEs per namespace not yet
	// withdrawn (UNANNOUNCE, CancelAnnounce).
	peerAnnounced map[string]int

	// ctlSem orders our SUBSCRIBE_DONE against the library's handling of an
	// incoming UNSUBSCRIBE (see controlStream).
	ctlSem chan struct{}

	stats     sessionCounters
	quic      *quicCounters // from the connection's context (see traceLosses)
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // goroutines started by this package for the session
}

func quicConfig(cfg *Config) *quic.Config {
	return &quic.Config{
		EnableDatagrams:       true, // v0.5.0 refuses to run without it
		MaxIncomingUniStreams: cfg.MaxIncomingUniStreams,
		MaxIdleTimeout:        cfg.MaxIdleTimeout,
		KeepAlivePeriod:       cfg.MaxIdleTimeout / 2,
		HandshakeIdleTimeout:  cfg.HandshakeTimeout,
		Tracer:                traceLosses,
	}
}

func newSession(conn *quic.Conn, cfg *Config) *Session {
	s := &Session{
		cfg:            cfg,
		conn:           conn,
		ctx:            conn.Context(),
		quic:           quicCountersOf(conn.Context()),
		publishers:     map[string]*Publisher{},
		inbounds:       map[uint64]*inbound{},
		aliasByRequest: map[uint64]uint64{},
		subscriptions:  map[*Subscription]struct{}{},
		live:           map[uint64]*subscriber{},
		ctlSem:         make(chan struct{}, 1),

		announceForSem:    make(chan struct{}, 1),
		relayedAnnouncers: map[uint64]string{},
		peerAnnounced:     map[string]int{},
	}
	// Only a chain crypto/tls verified counts (VerifiedChains): a server
	// that merely requests client certificates without verifying them, or
	// a client with InsecureSkipVerify, yields no identity.
	tlsState := conn.ConnectionState().TLS
	if name, err := identity.Peer(&tlsState); err == nil {
		s.peerIdentity = name
	}
	s.ms = &moqtransport.Session{
		InitialMaxRequestID: maxRequestID,
		Handler:             moqtransport.HandlerFunc(s.handle),
		SubscribeHandler:    moqtransport.SubscribeHandlerFunc(s.handleSubscribe),
	}
	return s
}

// setup runs the MoQ SETUP exchange with a timeout: v0.5.0's Run has none
// and ignores contexts, so on expiry we close the QUIC connection, which
// makes Run return.
func (s *Session) setup(ctx context.Context, perspective moqtransport.Perspective) error {
	gc := &guardedConn{conn: s.conn, perspective: perspective, sess: s}
	done := make(chan error, 1)
	go func() { done <- s.ms.Run(gc) }()
	select {
	case err := <-done:
		if err != nil {
			_ = s.conn.CloseWithError(0x1, "moq setup failed")
			return fmt.Errorf("moq: session setup with %s failed: %w", s.conn.RemoteAddr(), err)
		}
	case <-ctx.Done():
		_ = s.conn.CloseWithError(0x1, "moq setup timeout")
		<-done
		return fmt.Errorf("%w (peer %s, waited %s)", ErrSetupTimeout, s.conn.RemoteAddr(), s.cfg.HandshakeTimeout)
	}
	// Clean up our goroutines when the peer goes away, too.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-s.ctx.Done()
		s.closeSubscriptions()
	}()
	return nil
}

// Dial connects to a MoQ endpoint over raw QUIC (ALPN moq-00) and completes
// the MoQ SETUP within cfg.HandshakeTimeout.
func Dial(ctx context.Context, addr string, cfg *Config) (*Session, error) {
	cfg = cfg.withDefaults()
	var tc *tls.Config
	if cfg.TLSConfig != nil {
		tc = cfg.TLSConfig.Clone()
	} else {
		tc = &tls.Config{MinVersion: tls.VersionTLS13}
	}
	tc.NextProtos = []string{ALPN}
	if cfg.InsecureSkipVerify {
		tc.InsecureSkipVerify = true
	}
	sctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	// The connection's context is derived from the dial context, so the
	// session finds the tracer's counters there.
	qc, err := quic.DialAddr(withQUICCounters(sctx), addr, tc, quicConfig(cfg))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("%w: QUIC handshake with %s: %v", ErrSetupTimeout, addr, err)
		}
		return nil, fmt.Errorf("moq: dial %s: %w", addr, err)
	}
	s := newSession(qc, cfg)
	if err := s.setup(sctx, moqtransport.PerspectiveClient); err != nil {
		return nil, err
	}
	return s, nil
}

// Listener accepts MoQ sessions over raw QUIC.
type Listener struct {
	udp    *net.UDPConn
	tr     *quic.Transport
	ln     *quic.Listener
	cfg    *Config
	ready  chan *Session
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Listen listens on addr (UDP). tlsConf must hold a certificate (see
// DevTLSConfig); its NextProtos is forced to moq-00.
func Listen(addr string, tlsConf *tls.Config, cfg *Config) (*Listener, error) {
	if tlsConf == nil {
		return nil, errors.New("moq: Listen needs a TLS config with a certificate (use DevTLSConfig for tests)")
	}
	cfg = cfg.withDefaults()
	tc := tlsConf.Clone()
	tc.NextProtos = []string{ALPN}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("moq: listen on %s: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("moq: listen on %s: %w", addr, err)
	}
	// A Transport rather than quic.ListenAddr, for ConnContext: it gives
	// each connection its loss counters before quic-go asks for a tracer.
	tr := &quic.Transport{
		Conn: udp,
		ConnContext: func(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
			return withQUICCounters(ctx), nil
		},
	}
	ln, err := tr.Listen(tc, quicConfig(cfg))
	if err != nil {
		_ = tr.Close()
		_ = udp.Close()
		return nil, fmt.Errorf("moq: listen on %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Listener{udp: udp, tr: tr, ln: ln, cfg: cfg, ready: make(chan *Session), ctx: ctx, cancel: cancel}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	for {
		qc, err := l.ln.Accept(l.ctx)
		if err != nil {
			return
		}
		// Set each connection up in its own goroutine so a silent client
		// cannot hold up the others.
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			s := newSession(qc, l.cfg)
			sctx, cancel := context.WithTimeout(l.ctx, l.cfg.HandshakeTimeout)
			err := s.setup(sctx, moqtransport.PerspectiveServer)
			cancel()
			if err != nil {
				l.cfg.Logger.Info("moq: session setup failed", "remote", qc.RemoteAddr().String(), "err", err)
				return
			}
			select {
			case l.ready <- s:
			case <-l.ctx.Done():
				_ = s.Close()
			}
		}()
	}
}

// Accept returns the next session whose SETUP has completed.
func (l *Listener) Accept(ctx context.Context) (*Session, error) {
	select {
	case s := <-l.ready:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Addr is the local UDP address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// ClosedByPeer reports whether the session ended because the peer closed
// the QUIC connection (a relay shutting down), as opposed to an idle
// timeout (a dead peer), a network error or a local Close.
func (s *Session) ClosedByPeer() bool {
	var ae *quic.ApplicationError
	return errors.As(context.Cause(s.ctx), &ae) && ae.Remote
}

// Close stops accepting. Sessions already returned by Accept stay open.
func (l *Listener) Close() error {
	l.cancel()
	err := l.ln.Close()
	l.wg.Wait()
	// The Transport does not close a socket it was given.
	return errors.Join(err, l.tr.Close(), l.udp.Close())
}

// Done is closed when the session's connection is closed (by either end).
func (s *Session) Done() <-chan struct{} { return s.ctx.Done() }

// RemoteAddr is the peer's address.
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// PeerIdentity is the identity name (URI SAN moqsframe:NAME) of the peer's
// TLS certificate if crypto/tls verified its chain during the handshake,
// else "". On a listener this needs a TLS config that verifies client
// certificates (e.g. ClientAuth VerifyClientCertIfGiven with ClientCAs).
func (s *Session) PeerIdentity() string { return s.peerIdentity }

// ConnectionState is the TLS state of the session's QUIC connection (peer
// certificates, verified chains, ALPN).
func (s *Session) ConnectionState() tls.ConnectionState { return s.conn.ConnectionState().TLS }

// Stats returns the guard counters.
func (s *Session) Stats() SessionStats {
	return SessionStats{
		StreamsAccepted:    s.stats.streamsAccepted.Load(),
		StreamsRefused:     s.stats.streamsRefused.Load(),
		Oversize:           s.stats.oversize.Load(),
		DatagramsDiscarded: s.stats.datagramsDiscarded.Load(),
		StreamCreditWaits:  s.stats.streamCreditWaits.Load(),
		StaleUnsubscribes:  s.stats.staleUnsubscribes.Load(),
		StaleUnannounces:   s.stats.staleUnannounces.Load(),
		PacketsLost:        s.quic.lost.Load(),
		PacketsDropped:     s.quic.dropped.Load(),
	}
}

// Close closes the session and its QUIC connection, ends its subscriptions
// and waits for the goroutines this package started for it.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.shut = true
		s.mu.Unlock()
		// Closes the QUIC connection (code 0) and waits for the library's
		// control/accept goroutines.
		err := s.ms.Close()
		if err != nil && !isClosedErr(err) {
			s.closeErr = err
		}
		s.closeSubscriptions()
		// Publishers registered with Publish belong to this session.
		s.mu.Lock()
		pubs := make([]*Publisher, 0, len(s.publishers))
		for _, p := range s.publishers {
			pubs = append(pubs, p)
		}
		s.mu.Unlock()
		for _, p := range pubs {
			_ = p.Close()
		}
		s.wg.Wait()
	})
	return s.closeErr
}

func isClosedErr(err error) bool {
	var appErr *quic.ApplicationError
	if errors.As(err, &appErr) {
		return true
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, net.ErrClosed)
}

func (s *Session) closeSubscriptions() {
	s.mu.Lock()
	subs := make([]*Subscription, 0, len(s.subscriptions))
	for sub := range s.subscriptions {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		sub.stop(ErrSessionClosed)
	}
}

func (s *Session) closed() bool { return s.ctx.Err() != nil }

// Announce sends ANNOUNCE for namespace and waits for ANNOUNCE_OK. A
// refusal as unauthorized matches ErrUnauthorized.
// Announcing is what makes a relay route SUBSCRIBEs for the namespace to
// this session; register the tracks with Publish first.
func (s *Session) Announce(ctx context.Context, namespace []string) error {
	if s.closed() {
		return ErrSessionClosed
	}
	s.announceMu.RLock()
	defer s.announceMu.RUnlock()
	if err := s.ms.Announce(ctx, namespace); err != nil {
		if s.closed() {
			return ErrSessionClosed
		}
		var pe moqtransport.ProtocolError
		if errors.As(err, &pe) && pe.Code() == moqtransport.ErrorCodeAnnouncementUnauthorized {
			return fmt.Errorf("%w: announce %q refused: %v", ErrUnauthorized, namespace, err)
		}
		return fmt.Errorf("moq: announce %q refused or failed: %w", namespace, err)
	}
	return nil
}

// Publish registers a Publisher for (namespace, track) on this session:
// SUBSCRIBEs from the peer for it are attached to the Publisher. It is
// closed with the session.
func (s *Session) Publish(namespace []string, track string) (*Publisher, error) {
	key := trackKey(namespace, track)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.publishers[key]; ok && !p.isClosed() {
		return nil, fmt.Errorf("moq: track %q/%q is already published on this session; reuse its Publisher", namespace, track)
	}
	p := NewPublisher(namespace, track, s.cfg)
	s.publishers[key] = p
	return p, nil
}

// trackKey is an unambiguous map key for (namespace tuple, track).
func trackKey(namespace []string, track string) string {
	// Each field is length-prefixed, so no two (namespace, track) pairs
	// share a key whatever bytes they hold. One allocation: the key,
	// grown once to a bound (a length takes at most 20 digits).
	n := len(track) + 1
	for _, e := range namespace {
		n += len(e) + 22
	}
	var b strings.Builder
	b.Grow(n)
	var digits [20]byte
	for _, e := range namespace {
		b.Write(strconv.AppendInt(digits[:0], int64(len(e)), 10))
		b.WriteByte(':')
		b.WriteString(e)
		b.WriteByte('/')
	}
	b.WriteByte('|')
	b.WriteString(track)
	return b.String()
}

// openSubgroup opens a subgroup stream through the library and returns it
// with our stream under it, coalescing turned on (see sendStream). Only
// OpenSubgroup opens unidirectional streams here (FETCH is refused), so
// the stream opened while openMu is held is this call's.
func (s *Session) openSubgroup(w *moqtransport.SubscribeResponseWriter, group, subgroup uint64) (*moqtransport.Subgroup, *sendStream, error) {
	s.openMu.Lock()
	defer s.openMu.Unlock()
	s.lastOpened.Store(nil)
	sg, err := w.OpenSubgroup(group, subgroup, 0)
	st := s.lastOpened.Swap(nil)
	if err != nil {
		return nil, nil, err
	}
	if st != nil {
		st.coalesce = true
	}
	return sg, st, nil
}

// TrackKey is the key relays and callers can use to index (namespace, track).
func TrackKey(namespace []string, track string) string { return trackKey(namespace, track) }

// observeControlMessage sees every control message we send. For our
// SUBSCRIBEs it records the track alias, which v0.5.0 does not expose, and
// creates the credit gate before any data for it can arrive.
func (s *Session) observeControlMessage(msg []byte) {
	reqID, alias, ok := parseSubscribe(msg)
	if !ok {
		return
	}
	s.mu.Lock()
	s.inbounds[alias] = newInbound()
	s.aliasByRequest[reqID] = alias
	s.mu.Unlock()
}

func (s *Session) inboundFor(alias uint64) *inbound {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inbounds[alias]
}

func (s *Session) inboundForRequest(reqID uint64) (*inbound, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	alias, ok := s.aliasByRequest[reqID]
	if !ok {
		return nil, 0
	}
	return s.inbounds[alias], alias
}

// forgetRequest drops the gate of a subscription nobody will read.
func (s *Session) forgetRequest(reqID uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if alias, ok := s.aliasByRequest[reqID]; ok {
		if in := s.inbounds[alias]; in != nil {
			in.disable()
		}
		s.forgetInboundLocked(reqID, alias)
	}
}

// forgetInbound drops the gate of an ended subscription; later streams for
// its alias pass ungated (nobody reads them).
func (s *Session) forgetInboundLocked(reqID, alias uint64) {
	delete(s.aliasByRequest, reqID)
	delete(s.inbounds, alias)
}

func (s *Session) newControlStream(qs *quic.Stream) *controlStream {
	cs := &controlStream{s: qs, sess: s}
	s.mu.Lock()
	s.ctl = cs
	s.mu.Unlock()
	return cs
}

// libraryStopped is called when the library's stream-accept loop ends. If
// its context was cancelled while the connection is still up and nobody
// called Close, one of v0.5.0's session goroutines failed (for example its
// control loop on a protocol error): the session no longer handles control
// messages but would otherwise keep the connection open. Close the
// connection so both ends see the failure.
func (s *Session) libraryStopped(libCtx context.Context) {
	if libCtx.Err() == nil || s.ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	shut := s.shut
	s.mu.Unlock()
	if shut {
		return
	}
	s.cfg.Logger.Warn("moq: session failed inside moqtransport; closing the connection", "remote", s.conn.RemoteAddr().String())
	_ = s.conn.CloseWithError(0x1, "moq session failed (protocol error)")
}

// lockCtl takes ctlSem unless the session is gone.
func (s *Session) lockCtl() bool {
	select {
	case s.ctlSem <- struct{}{}:
		return true
	case <-s.ctx.Done():
		return false
	}
}

func (s *Session) unlockCtl() { <-s.ctlSem }

func (s *Session) isLiveSubscriber(reqID uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.live[reqID]
	return ok
}

// peerUnsubscribed ends the writer of the live subscriber reqID at once:
// the peer sent UNSUBSCRIBE, so nothing queued for it is wanted.
func (s *Session) peerUnsubscribed(reqID uint64) {
	s.mu.Lock()
	sub := s.live[reqID]
	s.mu.Unlock()
	if sub != nil {
		sub.abort(moqtransport.ErrorCodeSubscribeDoneSubscriptionEnded, "unsubscribed")
	}
}

func (s *Session) forgetLive(reqID uint64) {
	s.mu.Lock()
	delete(s.live, reqID)
	s.mu.Unlock()
}

// handle answers the control messages other than SUBSCRIBE. It runs on the
// library's control goroutine: it must answer and return without blocking.
func (s *Session) handle(w moqtransport.ResponseWriter, m *moqtransport.Message) {
	switch m.Method {
	case moqtransport.MessageAnnounce:
		var err error
		announcer, relayed := s.takeRelayedAnnouncer(m.RequestID)
		switch {
		case relayed && s.cfg.OnRelayedAnnounce != nil:
			err = s.cfg.OnRelayedAnnounce(s, m.Namespace, announcer)
		case s.cfg.OnAnnounce != nil:
			err = s.cfg.OnAnnounce(s, m.Namespace)
		default:
			_ = w.Reject(moqtransport.ErrorCodeAnnouncementNotSupported, "announcements are not accepted by this endpoint")
			return
		}
		if err != nil {
			code := moqtransport.ErrorCodeAnnouncementInternal
			if errors.Is(err, ErrUnauthorized) {
				code = moqtransport.ErrorCodeAnnouncementUnauthorized
			}
			_ = w.Reject(code, err.Error())
			return
		}
		_ = w.Accept()
	case moqtransport.MessageUnannounce:
		if s.cfg.OnUnannounce != nil {
			s.cfg.OnUnannounce(s, m.Namespace)
		}
	case moqtransport.MessageFetch:
		_ = w.Reject(moqtransport.ErrorCodeFetchNotSupported, "FETCH is not supported; SUBSCRIBE instead")
	case moqtransport.MessageTrackStatusRequest:
		_ = w.Reject(0, "TRACK_STATUS is not supported")
	case moqtransport.MessageSubscribeAnnounces:
		_ = w.Reject(moqtransport.ErrorCodeSubscribeAnnouncesNotSupported, "SUBSCRIBE_ANNOUNCES is not supported")
	default:
		// GOAWAY, UNANNOUNCE, ANNOUNCE_CANCEL, UNSUBSCRIBE_ANNOUNCES: w is nil.
		s.cfg.Logger.Info("moq: ignoring control message", "method", m.Method, "remote", s.conn.RemoteAddr().String())
	}
}

// handleSubscribe routes an incoming SUBSCRIBE to a Publisher. Runs on the
// library's control goroutine: never blocks; objects are written by the
// subscriber's own goroutine.
func (s *Session) handleSubscribe(w *moqtransport.SubscribeResponseWriter, m *moqtransport.SubscribeMessage) {
	s.mu.Lock()
	pub := s.publishers[trackKey(m.Namespace, m.Track)]
	s.mu.Unlock()
	if pub != nil && pub.isClosed() {
		pub = nil
	}
	if pub == nil && s.cfg.OnSubscribe != nil {
		var err error
		pub, err = s.cfg.OnSubscribe(s, m.Namespace, m.Track)
		if err != nil {
			code := moqtransport.ErrorCodeSubscribeInternal
			switch {
			case errors.Is(err, ErrUnknownTrack):
				code = moqtransport.ErrorCodeSubscribeTrackDoesNotExist
			case errors.Is(err, ErrUnauthorized):
				code = moqtransport.ErrorCodeSubscribeUnauthorized
			}
			_ = w.Reject(code, err.Error())
			return
		}
	}
	if pub == nil {
		_ = w.Reject(moqtransport.ErrorCodeSubscribeTrackDoesNotExist, "unknown track")
		return
	}
	sub, err := pub.attach(s, w)
	if err != nil {
		_ = w.Reject(moqtransport.ErrorCodeSubscribeTrackDoesNotExist, err.Error())
		return
	}
	sub.requestID = m.RequestID
	s.mu.Lock()
	s.live[m.RequestID] = sub
	s.mu.Unlock()
	if err := w.Accept(); err != nil {
		s.forgetLive(m.RequestID)
		pub.detach(sub)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sub.run()
	}()
}
