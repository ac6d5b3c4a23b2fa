package relay

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/moqsframe/moqsframe/moq"
)

// Backoff between upstream connection attempts.
const (
	upstreamRetryMin = 100 * time.Millisecond
	upstreamRetryMax = 5 * time.Second
)

// runUpstream keeps a session to u until the relay closes: dial, forward
// every local announcement u serves, wait for the session to end, retry
// with backoff.
func (r *Relay) runUpstream(u *upstreamConn) {
	backoff := upstreamRetryMin
	for r.ctx.Err() == nil {
		cfg := r.moqConfig()
		cfg.TLSConfig = r.cfg.UpstreamTLS
		s, err := moq.Dial(r.ctx, u.Addr, cfg)
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			r.cfg.Logger.Warn("upstream unreachable; retrying", "upstream", u.Addr, "in", backoff, "err", err)
			select {
			case <-time.After(backoff):
			case <-r.ctx.Done():
				return
			}
			backoff = min(2*backoff, upstreamRetryMax)
			continue
		}
		backoff = upstreamRetryMin
		r.upstreamConnects.Add(1)
		r.mu.Lock()
		u.sess = s
		r.upstreamSess[s] = u
		var anns []announcement
		for _, a := range r.announcements {
			if u.serves(a.namespace) {
				anns = append(anns, a)
			}
		}
		r.mu.Unlock()
		r.cfg.Logger.Info("upstream connected", "upstream", u.Addr, "identity", s.PeerIdentity(), "announcements", len(anns))
		for _, a := range anns {
			r.forwardAnnounce(s, a)
		}
		select {
		case <-s.Done():
		case <-r.ctx.Done():
		}
		r.mu.Lock()
		delete(r.upstreamSess, s)
		u.sess = nil
		r.mu.Unlock()
		_ = s.Close()
		r.cfg.Logger.Warn("upstream session ended", "upstream", u.Addr)
	}
}

// connectedUpstreamsLocked returns the sessions of the connected
// upstreams that serve namespace. Called with r.mu held.
func (r *Relay) connectedUpstreamsLocked(namespace []string) []*moq.Session {
	var out []*moq.Session
	for _, u := range r.upstreams {
		if u.sess != nil && u.serves(namespace) {
			out = append(out, u.sess)
		}
	}
	return out
}

// upstreamForLocked is the first connected upstream serving namespace, in
// Config.Upstreams order. Called with r.mu held.
func (r *Relay) upstreamForLocked(namespace []string) *moq.Session {
	if ups := r.connectedUpstreamsLocked(namespace); len(ups) > 0 {
		return ups[0]
	}
	return nil
}

// forwardAnnounceAsync forwards a from a new goroutine: it runs on a
// control goroutine, which must not wait for the upstream's answer.
func (r *Relay) forwardAnnounceAsync(up *moq.Session, a announcement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.forwardAnnounce(up, a)
	}()
}

// forwardAnnounce announces a.namespace on the upstream session up, on
// behalf of a.owner. If the upstream refuses it as unauthorized (another
// identity owns it tree-wide), the local announcement is withdrawn too
// (ANNOUNCE_CANCEL to the publisher), so that this relay does not serve
// locally what the tree refuses.
func (r *Relay) forwardAnnounce(up *moq.Session, a announcement) {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.UpstreamTimeout)
	defer cancel()
	ns := strings.Join(a.namespace, "/")
	err := up.AnnounceFor(ctx, a.namespace, a.owner)
	if err == nil {
		r.cfg.Logger.Info("announce forwarded upstream", "namespace", ns, "identity", a.owner, "upstream", up.RemoteAddr().String())
		return
	}
	if r.ctx.Err() != nil || errors.Is(err, moq.ErrSessionClosed) {
		return
	}
	r.upstreamAnnounceFailures.Add(1)
	r.cfg.Logger.Warn("upstream refused a forwarded announce", "namespace", ns, "identity", a.owner,
		"upstream", up.RemoteAddr().String(), "err", err)
	if !errors.Is(err, moq.ErrUnauthorized) {
		return
	}
	key := nsKey(a.namespace)
	r.mu.Lock()
	cur, ok := r.announcements[key]
	withdraw := ok && cur.sess == a.sess
	if withdraw {
		delete(r.announcements, key)
	}
	r.mu.Unlock()
	if withdraw {
		_ = a.sess.CancelAnnounce(a.namespace, "the upstream relay refused this namespace: another identity holds it")
	}
}
