package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// DefaultLeaseTTL is the forwarder lease of EtcdLeader when
// EtcdLeaderConfig.TTL is 0: how long the groups go without a forwarder
// after the one forwarding dies without resigning (kill -9, power loss,
// partition).
const DefaultLeaseTTL = 5 * time.Second

// EtcdLeaderConfig configures an EtcdLeader.
type EtcdLeaderConfig struct {
	// Name identifies this replica in the election (logs, etcdctl).
	Name string
	// TTL is the lease of the election key (whole seconds, at least 2 s;
	// 0: DefaultLeaseTTL).
	TTL time.Duration
	// OnChange, if set, is called with true when this replica becomes the
	// forwarder (before Next reports it) and with false when it stops.
	// It runs on the election goroutine and may block (e.g. to connect
	// to the relay).
	OnChange func(leading bool)
	Logger   *slog.Logger
}

// EtcdLeader elects, among the CS replicas sharing an EtcdStore's cluster
// and prefix, the one that forwards the outboxes to MoQ: a
// concurrency.Election on <prefix>forwarder under a session lease. One
// election covers all groups, because the relay routes the CS's namespace
// prefix to its latest announcer, so only one replica may hold the relay
// session at a time.
//
// In-order forwarding across a takeover: an outbox entry is deleted (Ack)
// only after it was handed to the relay, and entries are forwarded in ID
// order, so the outbox itself is the persisted forwarded position. A new
// forwarder starts from the oldest remaining entry: it may repeat entries
// the old one forwarded but did not ack (members drop duplicates), it can
// never skip or reorder one. A forwarder stops at once when its lease
// context ends (Leading), so a deposed one repeats at most the entry it
// was handing over.
//
// The leader learns of entries queued by other replicas from a watch on
// the pending markers (Next).
type EtcdLeader struct {
	s      *EtcdStore
	cfg    EtcdLeaderConfig
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	leading context.Context // nil while not leading
	dirty   map[string]bool
	gained  bool
	acks    []QueuedAck
	wake    chan struct{}
}

// ForwardWork is what EtcdLeader.Next hands to the forwarder.
type ForwardWork struct {
	// Gained: this replica just became the forwarder; forward every
	// pending group.
	Gained bool
	// Groups whose outbox got entries.
	Groups []string
	// Acks are epoch acknowledgements that other replicas received
	// (QueueAck), to publish on the AckTrack.
	Acks []QueuedAck
}

// QueuedAck is an epoch acknowledgement handed to the forwarder.
type QueuedAck struct {
	Group string
	Epoch uint64
	Leaf  uint32
	Ack   []byte // the EpochAck struct as the CS stamped it
}

// AckTTL is how long a queued acknowledgement stays in etcd: it matters
// for a moment (a roll-over), and a lost one costs its sender the roll-over
// timeout.
const AckTTL = 10 * time.Second

// NewEtcdLeader starts campaigning and watching; Close resigns.
func NewEtcdLeader(s *EtcdStore, cfg EtcdLeaderConfig) *EtcdLeader {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultLeaseTTL
	}
	cfg.TTL = max(cfg.TTL, 2*time.Second)
	l := &EtcdLeader{s: s, cfg: cfg, log: cfg.Logger, done: make(chan struct{}),
		dirty: map[string]bool{}, wake: make(chan struct{}, 1)}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); l.campaign(ctx) }()
	go func() { defer wg.Done(); l.watch(ctx) }()
	go func() { defer wg.Done(); l.watchAcks(ctx) }()
	go func() { wg.Wait(); close(l.done) }()
	return l
}

// Leading returns a context that ends when this replica stops being the
// forwarder, or nil if it is not the forwarder now.
func (l *EtcdLeader) Leading() context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.leading == nil || l.leading.Err() != nil {
		return nil
	}
	return l.leading
}

// Next blocks until there is forwarding to do (see ForwardWork).
func (l *EtcdLeader) Next(ctx context.Context) (ForwardWork, error) {
	for {
		l.mu.Lock()
		if l.gained || len(l.dirty) > 0 || len(l.acks) > 0 {
			w := ForwardWork{Gained: l.gained, Acks: l.acks}
			for g := range l.dirty {
				w.Groups = append(w.Groups, g)
			}
			l.gained, l.dirty, l.acks = false, map[string]bool{}, nil
			l.mu.Unlock()
			return w, nil
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return ForwardWork{}, ctx.Err()
		case <-l.done:
			return ForwardWork{}, ErrStoreClosed
		case <-l.wake:
		}
	}
}

// QueueAck hands an epoch acknowledgement to the forwarder (a key under
// <prefix>a/ with an AckTTL lease, which the forwarder watches).
func (l *EtcdLeader) QueueAck(ctx context.Context, group string, epoch uint64, leaf uint32, ack []byte) error {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	val := binary.BigEndian.AppendUint64(nil, epoch)
	val = binary.BigEndian.AppendUint32(val, leaf)
	val = append(val, ack...)
	return l.s.run(ctx, func(ctx context.Context) error {
		lease, err := l.s.cli.Grant(ctx, int64(AckTTL/time.Second))
		if err != nil {
			return err
		}
		_, err = l.s.cli.Put(ctx, l.s.prefix+"a/"+url.PathEscape(group)+"/"+hex.EncodeToString(id[:]), string(val), clientv3.WithLease(lease.ID))
		return err
	})
}

func (l *EtcdLeader) queuedAck(kv *mvccpb.KeyValue) (QueuedAck, bool) {
	rest := strings.TrimPrefix(string(kv.Key), l.s.prefix+"a/")
	esc, _, ok := strings.Cut(rest, "/")
	g, err := url.PathUnescape(esc)
	if !ok || err != nil || len(kv.Value) < 12 {
		return QueuedAck{}, false
	}
	return QueuedAck{Group: g, Epoch: binary.BigEndian.Uint64(kv.Value), Leaf: binary.BigEndian.Uint32(kv.Value[8:]),
		Ack: slices.Clone(kv.Value[12:])}, true
}

func (l *EtcdLeader) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// campaign runs sessions until ctx ends: campaign, lead until the session
// (its lease) ends, start over.
func (l *EtcdLeader) campaign(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		sess, err := concurrency.NewSession(l.s.cli, concurrency.WithTTL(int(l.cfg.TTL/time.Second)), concurrency.WithContext(ctx))
		if err != nil {
			l.log.Warn("forwarder election: no etcd session; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		l.lead(ctx, sess)
	}
}

func (l *EtcdLeader) lead(ctx context.Context, sess *concurrency.Session) {
	// Never revoke on the way out: if the session ended, the lease is gone
	// or unreachable; on Close the election key is resigned below (the
	// next replica takes over at once). Orphan stops the keep-alives.
	defer sess.Orphan()
	el := concurrency.NewElection(sess, l.s.prefix+"forwarder")
	cctx, stop := context.WithCancel(ctx)
	go func() {
		select {
		case <-sess.Done():
		case <-cctx.Done():
		}
		stop()
	}()
	if err := el.Campaign(cctx, l.cfg.Name); err != nil {
		stop()
		if ctx.Err() == nil {
			l.log.Warn("forwarder election: campaign ended; retrying", "err", err)
		}
		return
	}
	l.log.Info("this replica is now the forwarder", "name", l.cfg.Name, "key", el.Key())
	if l.cfg.OnChange != nil {
		l.cfg.OnChange(true)
	}
	l.mu.Lock()
	l.leading, l.gained = cctx, true
	l.mu.Unlock()
	l.signal()
	<-cctx.Done()
	l.mu.Lock()
	l.leading = nil
	l.mu.Unlock()
	stop()
	l.log.Warn("this replica is no longer the forwarder", "name", l.cfg.Name, "lease_lost", ctx.Err() == nil)
	if l.cfg.OnChange != nil {
		l.cfg.OnChange(false)
	}
	if ctx.Err() != nil {
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = el.Resign(rctx)
		cancel()
	}
}

// watch marks groups dirty when a replica queues an entry (puts the
// group's pending marker). A broken watch (compaction, etcd restart)
// restarts and reports gained so that every pending group is looked at.
func (l *EtcdLeader) watch(ctx context.Context) {
	for ctx.Err() == nil {
		wch := l.s.cli.Watch(clientv3.WithRequireLeader(ctx), l.s.pendingPrefix(), clientv3.WithPrefix(), clientv3.WithFilterDelete())
		for resp := range wch {
			if err := resp.Err(); err != nil {
				l.log.Warn("pending watch failed; restarting", "err", err)
				break
			}
			l.mu.Lock()
			for _, ev := range resp.Events {
				if g, err := l.s.pendingGroup(string(ev.Kv.Key)); err == nil {
					l.dirty[g] = true
				}
			}
			l.mu.Unlock()
			l.signal()
		}
		l.mu.Lock()
		l.gained = true
		l.mu.Unlock()
		l.signal()
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// watchAcks collects the acknowledgements queued by other replicas while
// this one leads. Acks queued while no watch ran are not replayed: they
// matter only for a moment.
func (l *EtcdLeader) watchAcks(ctx context.Context) {
	for ctx.Err() == nil {
		wch := l.s.cli.Watch(clientv3.WithRequireLeader(ctx), l.s.prefix+"a/", clientv3.WithPrefix(), clientv3.WithFilterDelete())
		for resp := range wch {
			if err := resp.Err(); err != nil {
				l.log.Warn("ack watch failed; restarting", "err", err)
				break
			}
			if l.Leading() == nil {
				continue
			}
			l.mu.Lock()
			for _, ev := range resp.Events {
				if a, ok := l.queuedAck(ev.Kv); ok {
					l.acks = append(l.acks, a)
				} else {
					l.log.Warn("ignoring a malformed queued ack", "key", string(ev.Kv.Key))
				}
			}
			l.mu.Unlock()
			l.signal()
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close resigns (if leading) and stops campaigning and watching.
func (l *EtcdLeader) Close() error {
	l.cancel()
	<-l.done
	return nil
}
