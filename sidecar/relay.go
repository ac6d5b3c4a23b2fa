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

	Reconnects atomic.Uint64
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
		pubs: &publisherSet{m: map[string]*moq.Publisher{}}, connected: make(chan struct{})}
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
		select {
		case <-sess.Done():
			c.Reconnects.Add(1)
			c.log.Warn("relay session lost; reconnecting", "relay", c.addr)
		case <-ctx.Done():
		}
		c.mu.Lock()
		c.sess = nil
		c.connected = make(chan struct{})
		c.mu.Unlock()
		sess.Close()
	}
	c.pubs.closeAll()
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
