package group

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqsframe/moqsframe/coord/moqforward"
	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/keyschedule"
	"github.com/moqsframe/moqsframe/mlsgroup"
	"github.com/moqsframe/moqsframe/moq"
)

// The driver's MoQ side: one reader goroutine per track, feeding objects
// into the loop (acks straight into the key schedule).

func (m *Member) subscribe(ctx context.Context, track string) (*moq.Subscription, error) {
	sub, err := m.cfg.Session.Subscribe(ctx, m.ns, track)
	if err != nil {
		return nil, fmt.Errorf("group: subscribe %s: %w", track, err)
	}
	return sub, nil
}

// acked handles an EpochAck from the ack track.
func (m *Member) acked(payload []byte) {
	a, err := wire.UnmarshalEpochAck(payload)
	if err != nil || string(a.GroupID) != m.cfg.Group {
		return
	}
	m.acksIn.Add(1)
	m.acks.ack(*a, m.sched)
}

// ackGate counts an acknowledgement only for the leaf of the identity that
// posted it: the CS stamps the poster's certificate name on each ack, and
// the gate compares it with the verified roster of the ack's epoch. Acks
// for an epoch not installed yet wait (bounded) for its roster.
type ackGate struct {
	mu      sync.Mutex
	rosters map[uint64]map[uint32]string // epoch -> leaf -> name
	latest  uint64
	pending map[uint64][]wire.EpochAck
	npend   int
	refused atomic.Uint64
}

// Bounds of the gate: rosters of this many recent epochs, and acks of
// future epochs waiting.
const (
	ackRosters    = 8
	ackPendingMax = 4096
)

func newAckGate() *ackGate {
	return &ackGate{rosters: map[uint64]map[uint32]string{}, pending: map[uint64][]wire.EpochAck{}}
}

func (g *ackGate) install(epoch uint64, roster []mlsgroup.RosterEntry, s *keyschedule.Schedule) {
	names := make(map[uint32]string, len(roster))
	for _, e := range roster {
		names[e.Leaf] = e.Name
	}
	g.mu.Lock()
	g.rosters[epoch] = names
	g.latest = max(g.latest, epoch)
	for e := range g.rosters {
		if e+ackRosters <= g.latest {
			delete(g.rosters, e)
		}
	}
	waiting := g.pending[epoch]
	delete(g.pending, epoch)
	g.npend -= len(waiting)
	for e, as := range g.pending {
		if e < epoch {
			g.npend -= len(as)
			delete(g.pending, e) // never installed here: skipped
		}
	}
	g.mu.Unlock()
	for _, a := range waiting {
		g.ack(a, s)
	}
}

func (g *ackGate) ack(a wire.EpochAck, s *keyschedule.Schedule) {
	g.mu.Lock()
	names, ok := g.rosters[a.Epoch]
	if !ok {
		if a.Epoch > g.latest && g.npend < ackPendingMax {
			g.pending[a.Epoch] = append(g.pending[a.Epoch], a)
			g.npend++
		}
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	if name, in := names[a.Leaf]; !in || name != string(a.Identity) {
		g.refused.Add(1)
		return
	}
	_ = s.Acknowledge(a.Epoch, uint64(a.Leaf))
}

// reader feeds one track's objects into the loop and re-subscribes (with
// backoff) when the subscription ends, e.g. because the CS restarted.
func (m *Member) reader(tr string, sub *moq.Subscription) {
	defer m.wg.Done()
	t := map[string]track{moqforward.TrackCommit: trackCommit, moqforward.TrackWelcome: trackWelcome, moqforward.TrackRequest: trackRequest}[tr]
	isAck := tr == moqforward.TrackAck
	// Every SUBSCRIBE uses a request ID of the session, and the peer grants
	// few (moq: 100 to start): re-subscribe slowly, and reset the backoff
	// only after a subscription lived a while. Meanwhile the archive
	// (sync) keeps the member up to date.
	const minBackoff, maxBackoff = 500 * time.Millisecond, 5 * time.Second
	rctx := m.ctx
	if t == trackWelcome {
		// As in the draft, a joiner unsubscribes from the WelcomeTrack once
		// it is in the group.
		var cancel context.CancelFunc
		rctx, cancel = context.WithCancel(m.ctx)
		defer cancel()
		go func() {
			select {
			case <-m.joinedCh:
			case <-m.ctx.Done():
			}
			cancel()
		}()
	}
	backoff := minBackoff
	for {
		since := time.Now()
		for sub != nil {
			o, err := sub.ReadObject(rctx)
			if err != nil {
				_ = sub.Close()
				sub = nil
				break
			}
			if time.Since(since) > 10*time.Second {
				backoff = minBackoff
			}
			if isAck {
				m.acked(o.Payload) // the schedule is safe for concurrent use
				continue
			}
			m.moqObjs.Add(1)
			select {
			case m.in <- inObject{Track: t, Num: o.GroupID, Data: o.Payload}:
			case <-rctx.Done():
				_ = sub.Close()
				return
			}
		}
		select {
		case <-rctx.Done():
			return
		case <-m.cfg.Session.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
		ctx, cancel := context.WithTimeout(rctx, 5*time.Second)
		s, err := m.cfg.Session.Subscribe(ctx, m.ns, tr)
		cancel()
		if err != nil {
			continue
		}
		sub = s
		if isAck {
			continue // acks are not archived; a missed one costs a timeout
		}
		// Anything published while we were not subscribed is in the archive.
		select {
		case m.in <- inResubscribed{}:
		case <-m.ctx.Done():
			_ = sub.Close()
			return
		}
	}
}
