package sidecar

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqsframe/moqsframe/moq"
)

// RelayClient keeps a MoQ session to a relay: it reconnects with
// exponential backoff, re-announces its namespaces and re-subscribes its
// tracks on every new session. Publishers and subscription handlers outlive
// sessions, so a reconnect loses no state (keys, counters, group/object
// numbering).
type RelayClient struct {
	addr string
	cfg  moq.Config
	log  *slog.Logger

	mu         sync.Mutex
	namespaces map[string][]string
	pubs       *publisherSet
	subs       []*wantedSub
	sess       *moq.Session
	connected  chan struct{} // closed while a session is up; replaced on loss
	buffer     ReconnectBuffer
	backlogs   map[backlogKey]*backlog
	now        func() time.Time

	// Reconnects counts sessions lost and re-established; Unpublished,
	// sealed objects evicted from the reconnect buffer before the relay
	// took them.
	Reconnects, Unpublished atomic.Uint64
}

type wantedSub struct {
	namespace []string
	track     string
	handle    func(moq.Object)
}

// Backoff bounds between connection attempts.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// NewRelayClient returns a client for the relay at addr. cfg may be nil.
func NewRelayClient(addr string, cfg *moq.Config, log *slog.Logger) *RelayClient {
	c := &RelayClient{addr: addr, log: log, namespaces: map[string][]string{},
		pubs: &publisherSet{m: map[string]*moq.Publisher{}}, connected: make(chan struct{}),
		backlogs: map[backlogKey]*backlog{}, now: time.Now}
	if cfg != nil {
		c.cfg = *cfg
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.cfg.OnSubscribe = c.pubs.lookup
	return c
}

// Publisher returns the publisher of (namespace, track), creating it and
// announcing its namespace on the current and every later session.
func (c *RelayClient) Publisher(namespace []string, track string) *moq.Publisher {
	p := c.pubs.get(namespace, track, &c.cfg)
	c.mu.Lock()
	defer c.mu.Unlock()
	nsKey := moq.TrackKey(namespace, "")
	if _, ok := c.namespaces[nsKey]; !ok {
		c.namespaces[nsKey] = namespace
		if c.sess != nil {
			go c.announce(c.sess, namespace)
		}
	}
	return p
}

// SetReconnectBuffer sets the bounds of the reconnect buffer that Sink's
// tracks keep (call it before the first Sink).
func (c *RelayClient) SetReconnectBuffer(b ReconnectBuffer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buffer = b
}

// Sink returns a sink that publishes each object on its track of
// namespace through the relay, with a reconnect buffer per track
// (ReconnectBuffer): the encrypting sidecar's output.
func (c *RelayClient) Sink(namespace []string) Sink {
	return &relaySink{c: c, namespace: namespace, nsKey: moq.TrackKey(namespace, "")}
}

type relaySink struct {
	c         *RelayClient
	namespace []string
	nsKey     string // moq.TrackKey(namespace, ""), built once
}

// WriteObject copies payload once: the copy is both kept and queued.
func (s *relaySink) WriteObject(track string, group, subgroup, object uint64, payload []byte) error {
	limit := s.c.cfg.MaxObjectSize
	if limit <= 0 {
		limit = moq.DefaultMaxObjectSize
	}
	if len(payload) > limit {
		return &moq.ObjectTooLargeError{Size: uint64(len(payload)), Max: uint64(limit)}
	}
	b := s.c.backlog(backlogKey{s.nsKey, track}, s.namespace)
	return b.write(moq.Object{GroupID: group, SubgroupID: subgroup, ObjectID: object, Payload: append([]byte(nil), payload...)})
}

// backlogKey names a published track: its namespace's key and its name. A
// struct of two strings, so finding a track's backlog per object builds
// no key.
type backlogKey struct{ ns, track string }

func (c *RelayClient) backlog(key backlogKey, namespace []string) *backlog {
	c.mu.Lock()
	b, ok := c.backlogs[key]
	cfg := c.buffer
	c.mu.Unlock()
	if ok {
		return b
	}
	pub := c.Publisher(namespace, key.track)
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok = c.backlogs[key]; !ok {
		b = newBacklog(pub, cfg, c.now, func() { c.Unpublished.Add(1) })
		c.backlogs[key] = b
	}
	return b
}

func (c *RelayClient) allBacklogs() []*backlog {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*backlog, 0, len(c.backlogs))
	for _, b := range c.backlogs {
		out = append(out, b)
	}
	return out
}

// Subscribers returns how many subscribers the client's publishers have:
// for an encrypting sidecar, whether the relay is pulling its tracks.
func (c *RelayClient) Subscribers() int { return c.pubs.subscribers() }

// Subscribe asks for (namespace, track) on every session, calling handle
// for each object from one goroutine per track. Handle may block: that
// pushes back on the relay through QUIC flow control.
func (c *RelayClient) Subscribe(namespace []string, track string, handle func(moq.Object)) {
	w := &wantedSub{namespace: namespace, track: track, handle: handle}
	c.mu.Lock()
	c.subs = append(c.subs, w)
	sess := c.sess
	c.mu.Unlock()
	if sess != nil {
		go c.follow(sess, w)
	}
}

// Connected reports whether a session to the relay is up. A relay that
// died without closing the connection is noticed within the idle timeout
// (moq.Config.MaxIdleTimeout; keep-alives go at half of it).
func (c *RelayClient) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess != nil
}

// WaitConnected blocks until a session is up.
func (c *RelayClient) WaitConnected(ctx context.Context) error {
	c.mu.Lock()
	ch := c.connected
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run connects and reconnects until ctx ends, then closes the session and
// the publishers (flushing queued objects).
func (c *RelayClient) Run(ctx context.Context) {
	backoff := minBackoff
	for ctx.Err() == nil {
		sess, err := moq.Dial(ctx, c.addr, &c.cfg)
		if err != nil {
			if ctx.Err() != nil {
				break // stopping: not a failure
			}
			c.log.Warn("relay connection failed; retrying", "relay", c.addr, "in", backoff, "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		c.mu.Lock()
		c.sess = sess
		namespaces := make([][]string, 0, len(c.namespaces))
		for _, ns := range c.namespaces {
			namespaces = append(namespaces, ns)
		}
		subs := append([]*wantedSub(nil), c.subs...)
		close(c.connected)
		c.mu.Unlock()
		c.log.Info("connected to relay", "relay", c.addr)
		for _, ns := range namespaces {
			c.announce(sess, ns)
		}
		for _, w := range subs {
			go c.follow(sess, w)
		}
		sessCtx, endSess := context.WithCancel(ctx)
		for _, b := range c.allBacklogs() {
			go b.resume(sessCtx)
		}
		select {
		case <-sess.Done():
			c.Reconnects.Add(1)
			if sess.ClosedByPeer() {
				c.log.Info("the relay closed the session; reconnecting", "relay", c.addr)
			} else {
				c.log.Warn("relay session lost; reconnecting", "relay", c.addr)
			}
			// The relay may have been gone for an idle timeout before the
			// session noticed; a second more covers objects in flight.
			for _, b := range c.allBacklogs() {
				b.lost(c.idleTimeout() + time.Second)
			}
		case <-ctx.Done():
		}
		endSess()
		c.mu.Lock()
		c.sess = nil
		c.connected = make(chan struct{})
		c.mu.Unlock()
		sess.Close()
	}
	c.pubs.closeAll()
}

func (c *RelayClient) idleTimeout() time.Duration {
	if c.cfg.MaxIdleTimeout > 0 {
		return c.cfg.MaxIdleTimeout
	}
	return moq.DefaultMaxIdleTimeout
}

func (c *RelayClient) announce(sess *moq.Session, ns []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sess.Announce(ctx, ns); err != nil {
		c.log.Warn("announce failed", "namespace", ns, "err", err)
	}
}

// follow keeps one subscription alive for the life of sess: a track that is
// not published yet, or ends, is subscribed again after a backoff.
func (c *RelayClient) follow(sess *moq.Session, w *wantedSub) {
	backoff := minBackoff
	for {
		select {
		case <-sess.Done():
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		sub, err := sess.Subscribe(ctx, w.namespace, w.track)
		cancel()
		if err == nil {
			backoff = minBackoff
			c.log.Info("subscribed", "namespace", w.namespace, "track", w.track)
			for {
				o, err := sub.ReadObject(context.Background())
				if err != nil {
					break
				}
				w.handle(o)
			}
			sub.Close()
		} else if !errors.Is(err, moq.ErrUnknownTrack) {
			c.log.Debug("subscribe failed", "track", w.track, "err", err)
		}
		select {
		case <-sess.Done():
			return
		case <-time.After(backoff):
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// PublisherSink writes each object to its track's publisher: to the relay
// (RelayClient) for an encrypting sidecar, to local subscribers
// (LocalServer) for a decrypting one.
type PublisherSink struct {
	Publishers Publishers
	Namespace  []string
}

// WriteObject publishes one object; the publisher copies the payload.
func (p PublisherSink) WriteObject(track string, group, subgroup, object uint64, payload []byte) error {
	return p.Publishers.Publisher(p.Namespace, track).WriteObject(group, subgroup, object, payload)
}
