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
		u.forwarded = map[string]bool{}
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
			r.forwardAnnounce(u, s, a)
		}
		select {
		case <-s.Done():
		case <-r.ctx.Done():
		}
		r.mu.Lock()
		delete(r.upstreamSess, s)
		u.sess, u.forwarded = nil, nil
		r.mu.Unlock()
		_ = s.Close()
		r.cfg.Logger.Warn("upstream session ended", "upstream", u.Addr)
	}
}

// connectedUpstreamsLocked returns the connected upstreams that serve
// namespace. Called with r.mu held.
func (r *Relay) connectedUpstreamsLocked(namespace []string) []*upstreamConn {
	var out []*upstreamConn
	for _, u := range r.upstreams {
		if u.sess != nil && u.serves(namespace) {
			out = append(out, u)
		}
	}
	return out
}

// upstreamForLocked is the session of the first connected upstream serving
// namespace, in Config.Upstreams order. Called with r.mu held.
func (r *Relay) upstreamForLocked(namespace []string) *moq.Session {
	if ups := r.connectedUpstreamsLocked(namespace); len(ups) > 0 {
		return ups[0].sess
	}
	return nil
}

// upstreamWithdrawal is an UNANNOUNCE to send to an upstream.
type upstreamWithdrawal struct {
	sess      *moq.Session
	namespace []string
}

// withdrawUpstreamLocked forgets that namespace (key) was forwarded and
// returns the UNANNOUNCEs to send for it. Called with r.mu held when the
// local announcement is gone.
func (r *Relay) withdrawUpstreamLocked(key string, namespace []string) []upstreamWithdrawal {
	var out []upstreamWithdrawal
	for _, u := range r.upstreams {
		if u.sess != nil && u.forwarded[key] {
			delete(u.forwarded, key)
			out = append(out, upstreamWithdrawal{u.sess, namespace})
		}
	}
	return out
}

// unannounceUpstreamAsyncLocked sends the UNANNOUNCEs from goroutines
// (callers run on control goroutines). Called with r.mu held.
func (r *Relay) unannounceUpstreamAsyncLocked(ws []upstreamWithdrawal) {
	if r.ctx.Err() != nil {
		return
	}
	for _, w := range ws {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.unannounceUpstream(w)
		}()
	}
}

func (r *Relay) unannounceUpstream(w upstreamWithdrawal) {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.UpstreamTimeout)
	defer cancel()
	if err := w.sess.Unannounce(ctx, w.namespace); err != nil {
		if !errors.Is(err, moq.ErrSessionClosed) && r.ctx.Err() == nil {
			r.cfg.Logger.Warn("unannounce upstream failed", "namespace", strings.Join(w.namespace, "/"), "upstream", w.sess.RemoteAddr().String(), "err", err)
		}
		return
	}
	r.cfg.Logger.Info("unannounce forwarded upstream", "namespace", strings.Join(w.namespace, "/"), "upstream", w.sess.RemoteAddr().String())
}

// forwardAnnounceAsync forwards a from a new goroutine: it runs on a
// control goroutine, which must not wait for the upstream's answer.
func (r *Relay) forwardAnnounceAsync(u *upstreamConn, a announcement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	up := u.sess
	if r.ctx.Err() != nil || up == nil {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.forwardAnnounce(u, up, a)
	}()
}

// forwardAnnounce announces a.namespace on the upstream session up, on
// behalf of a.owner. If the upstream refuses it as unauthorized (another
// identity owns it tree-wide), the local announcement is withdrawn too
// (ANNOUNCE_CANCEL to the publisher), so that this relay does not serve
// locally what the tree refuses.
func (r *Relay) forwardAnnounce(u *upstreamConn, up *moq.Session, a announcement) {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.UpstreamTimeout)
	defer cancel()
	ns := strings.Join(a.namespace, "/")
	key := nsKey(a.namespace)
	err := up.AnnounceFor(ctx, a.namespace, a.owner)
	if err == nil {
		r.cfg.Logger.Info("announce forwarded upstream", "namespace", ns, "identity", a.owner, "upstream", up.RemoteAddr().String())
		r.mu.Lock()
		if u.sess == up {
			u.forwarded[key] = true
			// Gone locally while the ANNOUNCE was under way: withdraw it.
			if _, ok := r.announcements[key]; !ok {
				r.unannounceUpstreamAsyncLocked(r.withdrawUpstreamLocked(key, a.namespace))
			}
		}
		r.mu.Unlock()
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
	r.mu.Lock()
	cur, ok := r.announcements[key]
	withdraw := ok && cur.sess == a.sess
	if withdraw {
		delete(r.announcements, key)
		r.unannounceUpstreamAsyncLocked(r.withdrawUpstreamLocked(key, a.namespace))
	}
	r.mu.Unlock()
	if withdraw {
		_ = a.sess.CancelAnnounce(a.namespace, "the upstream relay refused this namespace: another identity holds it")
	}
}
