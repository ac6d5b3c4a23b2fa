// Package group is the member side of a security group
// (draft-jennings-moq-e2ee-mls-03 §4): one MLS member (mlsgroup), the
// coordination service client (coord), the group's MoQ tracks through the
// relay (request, commit, welcome) and the SFrame key schedule
// (keyschedule) that every new epoch is installed into.
//
// A Member is a thin driver (this file, reader.go) around a deterministic
// core (core*.go): the driver owns the goroutines, the CS client, the MoQ
// subscriptions and the timer; it feeds what happens into the core and
// carries out the actions the core returns.
//
// See docs/security-groups.md for the roles, message flow, who commits,
// catch-up and the deviations from the draft.
package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/coord/moqforward"
	"github.com/moqsframe/moqsframe/keyschedule"
	"github.com/moqsframe/moqsframe/mlsgroup"
	"github.com/moqsframe/moqsframe/moq"
)

// Errors.
var (
	// ErrRemoved: a commit removed this member; it no longer has keys for
	// new epochs and must not send. Rejoin with a new Member.
	ErrRemoved = errors.New("group: removed from the group")
	// ErrClosed: the Member was closed.
	ErrClosed = errors.New("group: member closed")
	// ErrNotJoined: Join has not completed.
	ErrNotJoined = errors.New("group: not a member yet")
	// ErrRefused: the member refused the commit the CS accepted, because
	// it brought a credential that does not verify or that the policy
	// does not admit (EventRefused says which). It does not send until a
	// good epoch is installed. It wraps nothing; the event's Err has the
	// mlsgroup.RefusedError.
	ErrRefused = errors.New("group: refused the group's current epoch: not sending")
)

// CommitResult is the outcome of Member.Commit.
type CommitResult struct {
	Won       bool   // our commit was accepted (200/202)
	Conflicts int    // 409s received on the way
	Epoch     uint64 // epoch after the call
	// CommitBytes and WelcomeBytes are the sizes of the winning commit we
	// sent (0 when we did not win or there was nothing to commit).
	CommitBytes, WelcomeBytes int
}

// cmd is an API call for the loop: the input and where to answer.
type cmd struct {
	in    input
	reply chan cmdReply
}

type cmdReply struct {
	res CommitResult
	err error
}

// Member is one participant of a security group.
type Member struct {
	cfg   Config
	ns    []string
	mls   *mlsgroup.Member
	sched *keyschedule.Schedule
	log   *slog.Logger
	core  *core // only the loop goroutine touches it

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	startMu   sync.Mutex // orders starting goroutines against Close
	closed    bool
	closeOnce sync.Once
	closeErr  error

	in       chan input
	cmds     chan cmd
	abort    chan struct{} // Join gave up before the request went through
	joinErr  chan error
	events   chan Event
	dropped  atomic.Uint64
	loopDone chan struct{}

	// The loop's answers to API calls, by token.
	token   uint64
	replies map[uint64]chan cmdReply

	joinedCh   chan struct{}
	removedCh  chan struct{}
	epoch      atomic.Uint64
	isJoined   atomic.Bool
	isRemoved  atomic.Bool
	isRefused  atomic.Bool
	roster     atomic.Pointer[[]mlsgroup.RosterEntry]
	acks       *ackGate
	refusals   atomic.Uint64
	pendingN   atomic.Int64
	moqObjs    atomic.Uint64
	fetches    [3]atomic.Uint64 // commits, welcomes, requests
	acksIn     atomic.Uint64
	acksOut    atomic.Uint64
	noAcks     atomic.Bool // the CS does not relay acknowledgements
	beatsOut   atomic.Uint64
	leaf       atomic.Uint32 // our leaf in the newest installed epoch
	silentN    atomic.Int64
	removedSil atomic.Uint64
	started    atomic.Bool
	timer      *time.Timer
	timerArmed bool
}

// New creates a Member. Call Join next.
func New(cfg Config) (*Member, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	mm, err := mlsgroup.NewMember(cfg.Certificate, mlsgroup.Authenticator{Verifier: cfg.Verifier, Policy: cfg.Policy}, cfg.Group,
		mlsgroup.WithLogger(cfg.Logger))
	if err != nil {
		return nil, err
	}
	opts := cfg.ScheduleOptions
	if cfg.RolloverTimeout > 0 {
		opts = append([]keyschedule.Option{keyschedule.WithCoordinatedRollover(keyschedule.QuorumAll(), cfg.RolloverTimeout)}, opts...)
	}
	sched, err := keyschedule.New(cfg.Suite, opts...)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("member", mm.Name(), "group", cfg.Group)
	m := &Member{
		cfg: cfg, ns: moqforward.Namespace(cfg.Prefix, cfg.Group), mls: mm, sched: sched, log: log,
		core:      newCore(cfg, mm.Name(), mm, log),
		acks:      newAckGate(),
		in:        make(chan input, 256),
		cmds:      make(chan cmd),
		abort:     make(chan struct{}, 1),
		joinErr:   make(chan error, 1),
		events:    make(chan Event, 4096),
		loopDone:  make(chan struct{}),
		replies:   map[uint64]chan cmdReply{},
		joinedCh:  make(chan struct{}),
		removedCh: make(chan struct{}),
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// Schedule is the SFrame key schedule fed with every epoch: use it to Open
// any member's media, and Stream for own outbound streams.
func (m *Member) Schedule() *keyschedule.Schedule { return m.sched }

// Events delivers what happens (buffered; events are dropped, and counted
// in DroppedEvents, when the buffer is full). The channel is closed by
// Close, after the last event, so `for ev := range m.Events()` ends.
func (m *Member) Events() <-chan Event { return m.events }

// DroppedEvents counts events lost for a full Events buffer.
func (m *Member) DroppedEvents() uint64 { return m.dropped.Load() }

// Identity returns the member's identity: the name in its certificate.
func (m *Member) Identity() string { return m.mls.Name() }

// Roster returns the verified members of the newest installed epoch, in
// leaf order (nil before joining): who can read what this member sends.
func (m *Member) Roster() []mlsgroup.RosterEntry {
	if r := m.roster.Load(); r != nil {
		return *r
	}
	return nil
}

// Epoch returns the current epoch (0 before joining).
func (m *Member) Epoch() uint64 { return m.epoch.Load() }

// Joined is closed once the member is in the group.
func (m *Member) Joined() <-chan struct{} { return m.joinedCh }

// Removed is closed when a commit removed the member.
func (m *Member) Removed() <-chan struct{} { return m.removedCh }

// Stats counts how the member got its group objects.
type Stats struct {
	MoQObjects uint64 // commit/welcome/request objects received on MoQ
	// AcksSent and AcksReceived count epoch acknowledgements (coordinated
	// roll-over) posted to the CS and received on the ack track.
	AcksSent, AcksReceived uint64
	ArchiveFetches         uint64 // items fetched from the CS archive (catch-up), total
	// by kind
	FetchedCommits, FetchedWelcomes, FetchedRequests uint64
	// AcksRefused counts acknowledgements not counted: the identity the CS
	// stamped on them is not the member at their leaf.
	AcksRefused uint64
	// Refused counts credentials this member refused: join requests,
	// Welcomes and commits (EventRefused).
	Refused uint64
	// HeartbeatsSent counts heartbeats the CS recorded.
	HeartbeatsSent uint64
	// SilentMembers is how many roster members the CS has not heard for
	// longer than Config.LivenessTimeout, by the last liveness read (a
	// gauge; EventSilent names them).
	SilentMembers int
	// RemovedForSilence counts members this member's accepted commits
	// removed for silence.
	RemovedForSilence uint64
}

// Stats returns the member's counters.
func (m *Member) Stats() Stats {
	c, w, r := m.fetches[0].Load(), m.fetches[1].Load(), m.fetches[2].Load()
	return Stats{MoQObjects: m.moqObjs.Load(), AcksSent: m.acksOut.Load(), AcksReceived: m.acksIn.Load(), ArchiveFetches: c + w + r,
		FetchedCommits: c, FetchedWelcomes: w, FetchedRequests: r, AcksRefused: m.acks.refused.Load(), Refused: m.refusals.Load(),
		HeartbeatsSent: m.beatsOut.Load(), SilentMembers: int(m.silentN.Load()), RemovedForSilence: m.removedSil.Load()}
}

// PendingJoins is how many join requests this member has seen and not yet
// seen committed.
func (m *Member) PendingJoins() int { return int(m.pendingN.Load()) }

// KeyState exports the current epoch's SFrame base key and tree position.
func (m *Member) KeyState(ctx context.Context) (mlsgroup.KeyState, error) {
	if m.isRemoved.Load() {
		return mlsgroup.KeyState{}, ErrRemoved
	}
	return m.mls.KeyState(ctx, m.cfg.Suite.KeySize())
}

// Members returns the identities of the current epoch's members, sorted.
func (m *Member) Members(ctx context.Context) ([]string, error) {
	if m.isRemoved.Load() {
		return nil, ErrRemoved
	}
	r, err := m.mls.Roster(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(r))
	for _, e := range r {
		out = append(out, e.Name)
	}
	slices.Sort(out)
	return out, nil
}

// Join subscribes to the group's tracks (waiting for SUBSCRIBE_OK), sends a
// join request with a fresh KeyPackage and returns once the member is in
// the group: it created it (CS answered 201) or processed its Welcome.
// Transport failures of the join request are retried until ctx ends.
func (m *Member) Join(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("group: Join called twice")
	}
	type started struct {
		tr  string
		sub *moq.Subscription
	}
	var readers []started
	if m.cfg.Session != nil {
		tracks := []string{moqforward.TrackCommit, moqforward.TrackWelcome, moqforward.TrackRequest}
		if m.cfg.RolloverTimeout > 0 {
			tracks = append(tracks, moqforward.TrackAck)
		}
		for _, tr := range tracks {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			sub, err := m.subscribe(sctx, tr)
			cancel()
			if err != nil {
				// E.g. the CS is not announced at the relay right now: the
				// reader keeps retrying and the archive fills the gap.
				m.log.Warn("subscribe failed; retrying in the background", "track", tr, "err", err)
			}
			readers = append(readers, started{tr, sub})
		}
	}
	m.startMu.Lock()
	if m.closed {
		m.startMu.Unlock()
		for _, r := range readers {
			if r.sub != nil {
				_ = r.sub.Close()
			}
		}
		return ErrClosed
	}
	for _, r := range readers {
		m.wg.Add(1)
		go m.reader(r.tr, r.sub)
	}
	m.wg.Add(1)
	go m.loop()
	m.startMu.Unlock()
	select {
	case <-m.joinedCh:
		return nil
	case err := <-m.joinErr:
		return err
	case <-ctx.Done():
		select {
		case m.abort <- struct{}{}:
		default:
		}
		return ctx.Err()
	case <-m.ctx.Done():
		return ErrClosed
	}
}

// Commit commits the pending requests now (whatever the policy) and
// reports whether our commit won. With nothing pending it returns at once.
func (m *Member) Commit(ctx context.Context) (CommitResult, error) {
	return m.do(ctx, inCommit{})
}

// Leave sends a leave request (our own Remove proposal, re-proposed in
// every new epoch until it is committed) and waits until a commit removed
// us, or ctx ends.
func (m *Member) Leave(ctx context.Context) error {
	if _, err := m.do(ctx, inLeave{}); err != nil {
		return err
	}
	select {
	case <-m.removedCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// do hands an API call to the loop (which gives it a token) and waits for
// the core's answer.
func (m *Member) do(ctx context.Context, in input) (CommitResult, error) {
	if !m.isJoined.Load() {
		return CommitResult{}, ErrNotJoined
	}
	reply := make(chan cmdReply, 1)
	select {
	case m.cmds <- cmd{in: in, reply: reply}:
	case <-ctx.Done():
		return CommitResult{}, ctx.Err()
	case <-m.loopDone:
		return CommitResult{}, m.stoppedErr()
	}
	select {
	case r := <-reply:
		return r.res, r.err
	case <-ctx.Done():
		return CommitResult{}, ctx.Err()
	case <-m.loopDone:
		return CommitResult{}, m.stoppedErr()
	}
}

func (m *Member) stoppedErr() error {
	if m.isRemoved.Load() {
		return ErrRemoved
	}
	return ErrClosed
}

// Close stops the member (it does not leave the group) and closes Events.
func (m *Member) Close() error {
	m.closeOnce.Do(func() {
		m.startMu.Lock()
		m.closed = true
		m.startMu.Unlock()
		m.cancel()
		m.wg.Wait()
		// Only the goroutines just waited for send events.
		close(m.events)
		m.closeErr = m.mls.Close()
	})
	return m.closeErr
}

// ---- the loop ----

// loop owns the core: it feeds it inputs and carries out its actions.
func (m *Member) loop() {
	defer m.wg.Done()
	defer close(m.loopDone)
	m.timer = time.NewTimer(time.Hour)
	m.timer.Stop()
	defer m.timer.Stop()
	m.run(inJoin{})
	for !m.isRemoved.Load() {
		select {
		case <-m.ctx.Done():
			return
		case in := <-m.in:
			batch := []input{in}
		drain:
			for range 64 {
				select {
				case in := <-m.in:
					batch = append(batch, in)
				default:
					break drain
				}
			}
			m.run(batch...)
		case c := <-m.cmds:
			m.token++
			m.replies[m.token] = c.reply
			switch in := c.in.(type) {
			case inCommit:
				in.Token = m.token
				m.run(in)
			case inLeave:
				in.Token = m.token
				m.run(in)
			}
		case <-m.abort:
			m.run(inAbortJoin{})
		case <-m.timer.C:
			m.timerArmed = false
			m.run(inTick{})
		}
	}
}

// run steps the core with ins and carries out the resulting actions in
// order, feeding the answers of CS requests back in as they come. The
// requests are made here, one after the other, as the loop did before the
// split: nothing else changes the member meanwhile.
func (m *Member) run(ins ...input) {
	q := m.step(ins...)
	for len(q) > 0 && m.ctx.Err() == nil {
		a := q[0]
		q = q[1:]
		q = append(q, m.exec(a)...)
	}
}

func (m *Member) step(ins ...input) []action {
	acts := m.core.step(time.Now(), ins...)
	m.epoch.Store(m.core.epoch)
	m.pendingN.Store(int64(m.core.pendingJoins()))
	m.silentN.Store(int64(len(m.core.live.silent)))
	m.removedSil.Store(m.core.live.removed)
	return acts
}

// drain feeds the objects the readers have queued, so that the core does
// not fetch from the archive what has arrived on MoQ meanwhile.
func (m *Member) drain() []action {
	var batch []input
	for {
		select {
		case in := <-m.in:
			if _, ok := in.(inObject); ok {
				// A re-subscription met here is dropped: the caller is
				// syncing already, and the next poll fetches anything else.
				batch = append(batch, in)
			}
		default:
			if len(batch) == 0 {
				return nil
			}
			return m.step(batch...)
		}
	}
}

// exec carries out one action and returns the actions that followed.
func (m *Member) exec(a action) []action {
	ctx, cs, g := m.ctx, m.cfg.CS, m.cfg.Group
	switch a := a.(type) {
	case actFetchState:
		acts := m.drain()
		e, n, err := cs.State(ctx, g)
		return append(acts, m.step(inState{Purpose: a.Purpose, Epoch: e, NextSeq: n, Err: err})...)
	case actFetch:
		acts := m.drain()
		if m.core.unwanted(a) {
			return append(acts, m.step(inFetched{Track: a.Track, Num: a.Num, Skipped: true})...)
		}
		data, err := m.fetch(ctx, a)
		return append(acts, m.step(inFetched{Track: a.Track, Num: a.Num, Data: data, Err: err})...)
	case actPostJoin:
		created, err := cs.Join(ctx, g, a.KeyPackage)
		return m.step(inPosted{Post: postJoin, Created: created, Err: err})
	case actPostCommit:
		err := cs.Commit(ctx, g, a.Epoch, a.Commit, a.Welcome)
		p := postCommit
		if a.Welcome != nil {
			p = postWelcome
		}
		return m.step(inPosted{Post: p, Epoch: a.Epoch, Err: err})
	case actPostLeave:
		err := cs.Leave(ctx, g, a.Proposal)
		return m.step(inPosted{Post: postLeave, Epoch: a.Epoch, Err: err})
	case actReportUnprocessable:
		err := cs.ReportUnprocessable(ctx, g, a.Epoch)
		return m.step(inPosted{Post: postUnprocessable, Epoch: a.Epoch, Err: err})
	case actPostAck:
		m.ack(a.Epoch, a.Leaf)
	case actFetchLiveness:
		acts := m.drain()
		rep, err := cs.Liveness(ctx, g)
		return append(acts, m.step(inLiveness{Report: rep, Err: err})...)
	case actPostRetire:
		err := cs.Retire(ctx, g, a.Epoch, a.Leaf, m.Identity())
		return m.step(inPosted{Post: postRetire, Epoch: a.Epoch, Err: err})
	case actInstall:
		ks := a.Key
		err := m.sched.Install(keyschedule.Epoch{
			Number: ks.Epoch, BaseKey: ks.BaseKey, GroupSize: int(ks.GroupSize),
			Index: uint64(ks.LeafIndex), Members: ks.Members, Immediate: a.Immediate,
		})
		if err != nil && !errors.Is(err, keyschedule.ErrStaleEpoch) {
			m.emit(Event{Type: EventError, Epoch: ks.Epoch, Time: time.Now(), Err: fmt.Errorf("group: install epoch %d: %w", ks.Epoch, err)})
		}
		r := a.Roster
		m.roster.Store(&r)
		m.leaf.Store(ks.LeafIndex)
		m.acks.install(ks.Epoch, r, m.sched)
	case actSending:
		m.isRefused.Store(!a.On)
	case actEmit:
		m.emit(a.Event)
		switch a.Event.Type {
		case EventJoined:
			if m.isJoined.CompareAndSwap(false, true) {
				close(m.joinedCh)
				if m.cfg.LivenessTimeout > 0 {
					m.wg.Add(1)
					go m.heartbeats()
				}
			}
		case EventRemoved:
			if m.isRemoved.CompareAndSwap(false, true) {
				close(m.removedCh)
			}
		case EventRefused:
			m.refusals.Add(1)
		}
	case actArmTimer:
		if m.timerArmed {
			m.timer.Stop()
			m.timerArmed = false
		}
		if !a.At.IsZero() {
			m.timer.Reset(max(time.Until(a.At), 0))
			m.timerArmed = true
		}
	case actTickSchedule:
		m.sched.Tick()
	case actJoinDone:
		select {
		case m.joinErr <- a.Err:
		default:
		}
	case actCommitDone:
		m.reply(a.Token, cmdReply{res: a.Result, err: a.Err})
	case actLeaveDone:
		m.reply(a.Token, cmdReply{err: a.Err})
	}
	return nil
}

func (m *Member) reply(token uint64, r cmdReply) {
	if ch, ok := m.replies[token]; ok {
		delete(m.replies, token)
		ch <- r
	}
}

func (m *Member) emit(e Event) {
	select {
	case m.events <- e:
	default:
		m.dropped.Add(1)
	}
}

// fetch gets an archived item from the CS.
func (m *Member) fetch(ctx context.Context, a actFetch) ([]byte, error) {
	var d []byte
	var err error
	var k int
	switch a.Track {
	case trackCommit:
		d, err = m.cfg.CS.CommitAt(ctx, m.cfg.Group, a.Num)
	case trackWelcome:
		k = 1
		d, err = m.cfg.CS.WelcomeAt(ctx, m.cfg.Group, a.Num)
	case trackRequest:
		k = 2
		d, err = m.cfg.CS.RequestAt(ctx, m.cfg.Group, a.Num)
	}
	if err == nil {
		m.fetches[k].Add(1)
	}
	return d, err
}

// ack tells the other members, through the CS, that we hold epoch. It runs
// in the background: the loop must not wait on it, and a lost ack costs a
// sender only its roll-over timeout.
func (m *Member) ack(epoch uint64, leaf uint32) {
	if m.noAcks.Load() {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
		defer cancel()
		err := m.cfg.CS.Ack(ctx, m.cfg.Group, epoch, leaf, m.Identity())
		switch {
		case err == nil:
			m.acksOut.Add(1)
		case errors.Is(err, coord.ErrAckUnsupported):
			m.noAcks.Store(true)
			m.log.Warn("the CS does not relay acknowledgements: new epochs are used after the roll-over timeout")
		default:
			m.log.Debug("acknowledgement not sent", "epoch", epoch, "err", err)
		}
	}()
}

// heartbeats tells the CS every HeartbeatInterval that we are alive, with
// our newest epoch and leaf, until the member is closed or removed. It runs
// apart from the loop, so that a loop busy with a long catch-up under load
// does not make a live member look silent.
func (m *Member) heartbeats() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.HeartbeatInterval)
		err := m.cfg.CS.Heartbeat(ctx, m.cfg.Group, m.epoch.Load(), m.leaf.Load(), m.Identity())
		cancel()
		if err == nil {
			m.beatsOut.Add(1)
		} else if m.ctx.Err() == nil {
			m.log.Debug("heartbeat not sent", "err", err)
		}
		select {
		case <-m.ctx.Done():
			return
		case <-m.removedCh:
			return
		case <-t.C:
		}
	}
}
