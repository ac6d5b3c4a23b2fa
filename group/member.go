// Package group is the member side of a security group
// (draft-jennings-moq-e2ee-mls-03 §4): one MLS member (mlsgroup), the
// coordination service client (coord), the group's MoQ tracks through the
// relay (request, commit, welcome) and the SFrame key schedule
// (keyschedule) that every new epoch is installed into.
//
// See docs/security-groups.md for the roles, message flow, who commits,
// catch-up and the deviations from the draft.
package group

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/coord/moqforward"
	"github.com/moqsframe/moqsframe/keyschedule"
	"github.com/moqsframe/moqsframe/mlsgroup"
	"github.com/moqsframe/moqsframe/moq"
	"github.com/moqsframe/moqsframe/sframe"
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
)

// EventType says what happened.
type EventType int

const (
	EventJoined    EventType = iota + 1 // we are a member (created the group or joined from a Welcome)
	EventEpoch                          // a new epoch was installed (someone else's commit)
	EventCommitted                      // our commit won its epoch and was installed
	EventConflict                       // our commit lost its epoch (409)
	EventRemoved                        // a commit removed us: stop sending
	EventError                          // something failed and will be retried; Err says what
)

func (t EventType) String() string {
	switch t {
	case EventJoined:
		return "joined"
	case EventEpoch:
		return "epoch"
	case EventCommitted:
		return "committed"
	case EventConflict:
		return "conflict"
	case EventRemoved:
		return "removed"
	case EventError:
		return "error"
	}
	return fmt.Sprintf("event(%d)", int(t))
}

// Event is delivered on Member.Events.
type Event struct {
	Type    EventType
	Epoch   uint64    // the member's epoch after the event
	Members int       // group members after the event
	Time    time.Time // when it happened; EventCommitted: when the CS's 200 arrived
	// EventCommitted only: sizes of our Commit and Welcome (0 if none), the
	// time from staging to the CS's 200, and the number of joiners added.
	CommitBytes, WelcomeBytes int
	CommitRTT                 time.Duration
	Added                     int
	Err                       error
}

// Config configures a Member.
type Config struct {
	Identity string        // MLS basic credential; unique in the group
	Group    string        // group name (coord.ValidGroupName)
	CS       *coord.Client // required
	// Session is the MoQ session to the relay. It may be shared by several
	// Members. nil: no MoQ, catch-up from the CS archive only (polling).
	Session *moq.Session
	Prefix  []string           // namespace prefix; empty = moqforward.DefaultPrefix
	Suite   sframe.CipherSuite // SFrame suite; 0 = AES128GCMSHA256_128
	// ScheduleOptions are passed to keyschedule.New.
	ScheduleOptions []keyschedule.Option
	// Manual disables automatic commits: the application calls Commit.
	Manual bool
	// CommitDelay is how long the designated committer (lowest leaf index
	// among members not leaving) waits after seeing a request before
	// committing, to batch requests. Default 50ms.
	CommitDelay time.Duration
	// BackupDelay: the member of rank r (1..MaxBackups) commits pending
	// requests only if they are still pending CommitDelay + r*BackupDelay
	// after it saw them. Default 2s; MaxBackups default 2.
	BackupDelay time.Duration
	MaxBackups  int
	// PollInterval is how often the member asks the CS for its state to
	// find missed objects, and retries failed posts. Default 1s.
	PollInterval time.Duration
	// RolloverTimeout is how long, after a new epoch, this member keeps
	// sealing with the previous one while waiting for every member to
	// acknowledge the new one (coordinated roll-over: acknowledgements go
	// through the CS on the group's "ack" track). It stops objects that
	// other members cannot open yet. An epoch that removed members is used
	// at once. Default 1s; negative: always switch at once.
	RolloverTimeout time.Duration
	Logger          *slog.Logger
}

// CommitResult is the outcome of Member.Commit.
type CommitResult struct {
	Won       bool   // our commit was accepted (200/202)
	Conflicts int    // 409s received on the way
	Epoch     uint64 // epoch after the call
	// CommitBytes and WelcomeBytes are the sizes of the winning commit we
	// sent (0 when we did not win or there was nothing to commit).
	CommitBytes, WelcomeBytes int
}

type kind int

const (
	kCommit kind = iota + 1
	kWelcome
	kRequest
	kResubscribed
)

type item struct {
	k    kind
	num  uint64
	data []byte
}

type pendingJoin struct {
	identity []byte
	kp       []byte
	seen     time.Time
}

type staged struct {
	epoch   uint64
	commit  []byte
	start   time.Time
	added   int
	welcome []byte // after ConfirmCommit
}

type cmd struct {
	commit bool
	leave  bool
	reply  chan cmdReply
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

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	in      chan item
	cmds    chan cmd
	events  chan Event
	dropped atomic.Uint64

	joinedCh  chan struct{}
	removedCh chan struct{}
	joinedAt  atomic.Int64
	epoch     atomic.Uint64
	isJoined  atomic.Bool
	isRemoved atomic.Bool
	pendingN  atomic.Int64
	moqObjs   atomic.Uint64
	fetches   [3]atomic.Uint64 // commits, welcomes, requests
	acksIn    atomic.Uint64
	acksOut   atomic.Uint64
	noAcks    atomic.Bool // the CS does not relay acknowledgements
	started   atomic.Bool
	prevIDs   map[string]bool // members of the newest installed epoch

	// Loop state (only the loop goroutine touches these after Join).
	commits      map[uint64][]byte
	welcomes     map[uint64][]byte
	welcomeDone  map[uint64]bool
	welcomeFrom  uint64 // CS epoch seen before our join request
	requests     map[uint64][]byte
	nextSeq      uint64
	joins        []pendingJoin
	leaves       map[uint64]map[uint32][]byte // epoch -> sender leaf -> proposal
	leaving      bool
	leaveEpoch   uint64 // epoch our current leave proposal was made in
	leavePosted  bool
	leaveMsg     []byte
	prevEpoch    uint64 // CS state at the previous sync
	prevNext     uint64
	stagedCommit *staged // posted, CS answer not known yet: blocks commits and proposals
	welcomeOut   *staged // confirmed; its late Welcome is not posted yet
	lastWelcome  int
	commitAt     time.Time // armed auto-commit deadline (zero: none)
}

// New creates a Member. Call Join next.
func New(cfg Config) (*Member, error) {
	if cfg.CS == nil {
		return nil, errors.New("group: Config.CS is required")
	}
	if !coord.ValidGroupName(cfg.Group) {
		return nil, fmt.Errorf("group: invalid group name %q", cfg.Group)
	}
	if cfg.Identity == "" {
		return nil, errors.New("group: Config.Identity is required")
	}
	if len(cfg.Prefix) == 0 {
		cfg.Prefix = moqforward.DefaultPrefix
	}
	if cfg.Suite == 0 {
		cfg.Suite = sframe.AES128GCMSHA256_128
	}
	if cfg.CommitDelay <= 0 {
		cfg.CommitDelay = 50 * time.Millisecond
	}
	if cfg.BackupDelay <= 0 {
		cfg.BackupDelay = 2 * time.Second
	}
	if cfg.MaxBackups <= 0 {
		cfg.MaxBackups = 2
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.RolloverTimeout == 0 {
		cfg.RolloverTimeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	mm, err := mlsgroup.NewMember([]byte(cfg.Identity), cfg.Group)
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
	m := &Member{
		cfg: cfg, ns: moqforward.Namespace(cfg.Prefix, cfg.Group), mls: mm, sched: sched,
		log:       cfg.Logger.With("member", cfg.Identity, "group", cfg.Group),
		in:        make(chan item, 256),
		cmds:      make(chan cmd),
		events:    make(chan Event, 4096),
		joinedCh:  make(chan struct{}),
		removedCh: make(chan struct{}),
		commits:   map[uint64][]byte{}, welcomes: map[uint64][]byte{}, welcomeDone: map[uint64]bool{},
		requests: map[uint64][]byte{}, leaves: map[uint64]map[uint32][]byte{},
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// Schedule is the SFrame key schedule fed with every epoch: use it to Open
// any member's media, and Stream for own outbound streams.
func (m *Member) Schedule() *keyschedule.Schedule { return m.sched }

// Events delivers what happens (buffered; events are dropped, and counted
// in DroppedEvents, when the buffer is full).
func (m *Member) Events() <-chan Event { return m.events }

// DroppedEvents counts events lost for a full Events buffer.
func (m *Member) DroppedEvents() uint64 { return m.dropped.Load() }

// Identity returns the member's identity.
func (m *Member) Identity() string { return m.cfg.Identity }

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
}

// Stats returns the member's counters.
func (m *Member) Stats() Stats {
	c, w, r := m.fetches[0].Load(), m.fetches[1].Load(), m.fetches[2].Load()
	return Stats{MoQObjects: m.moqObjs.Load(), AcksSent: m.acksOut.Load(), AcksReceived: m.acksIn.Load(), ArchiveFetches: c + w + r,
		FetchedCommits: c, FetchedWelcomes: w, FetchedRequests: r}
}

// PendingJoins is how many join requests this member has seen and not yet
// seen committed.
func (m *Member) PendingJoins() int { return int(m.pendingN.Load()) }

// KeyState exports the current epoch's SFrame base key and tree position.
func (m *Member) KeyState(ctx context.Context) (mlsgroup.KeyState, error) {
	if m.isRemoved.Load() {
		return mlsgroup.KeyState{}, ErrRemoved
	}
	return m.mls.Export(ctx, m.cfg.Suite.KeySize())
}

// Sealer is an outbound SFrame stream that refuses to seal once the member
// was removed (it has no keys for the group's new epochs, and must stop
// sending on the old ones).
type Sealer struct {
	m  *Member
	st *keyschedule.Stream
}

// Seal encrypts with the newest epoch (keyschedule.Stream.Seal).
func (s *Sealer) Seal(dst, metadata, plaintext []byte) ([]byte, error) {
	if s.m.isRemoved.Load() {
		return nil, ErrRemoved
	}
	return s.st.Seal(dst, metadata, plaintext)
}

// Stream returns an outbound stream with the given KID context value (use a
// distinct value per published track).
func (m *Member) Stream(context uint64) (*Sealer, error) {
	st, err := m.sched.Stream(context)
	if err != nil {
		return nil, err
	}
	return &Sealer{m: m, st: st}, nil
}

func (m *Member) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Epoch == 0 {
		e.Epoch = m.epoch.Load()
	}
	select {
	case m.events <- e:
	default:
		m.dropped.Add(1)
	}
}

// Join subscribes to the group's tracks (waiting for SUBSCRIBE_OK), sends a
// join request with a fresh KeyPackage and returns once the member is in
// the group: it created it (CS answered 201) or processed its Welcome.
// Transport failures of the join request are retried until ctx ends.
func (m *Member) Join(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("group: Join called twice")
	}
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
			m.wg.Add(1)
			go m.reader(tr, sub)
		}
	}
	// Lower bounds for our Welcome's epoch and for the requests we must see.
	var created bool
	backoff := 100 * time.Millisecond
	for {
		e, seq, err := m.cfg.CS.State(ctx, m.cfg.Group)
		if err == nil || errors.Is(err, coord.ErrUnknownGroup) {
			m.welcomeFrom, m.nextSeq = e, seq
			kp, kerr := m.mls.KeyPackage(ctx)
			if kerr != nil {
				return kerr
			}
			created, err = m.cfg.CS.Join(ctx, m.cfg.Group, kp)
			if err == nil {
				break
			}
		}
		var se *coord.StatusError
		if errors.As(err, &se) && se.Code < 500 {
			return fmt.Errorf("group: join request refused: %w", err)
		}
		m.log.Warn("join request failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	if created {
		if err := m.mls.Create(ctx); err != nil {
			return err
		}
		if err := m.becameMember(ctx); err != nil {
			return err
		}
	}
	m.wg.Add(1)
	go m.loop()
	select {
	case <-m.joinedCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-m.ctx.Done():
		return ErrClosed
	}
}

// becameMember installs the first epoch and signals Joined.
func (m *Member) becameMember(ctx context.Context) error {
	if err := m.install(ctx); err != nil {
		return err
	}
	m.isJoined.Store(true)
	// Commits for epochs before ours are useless now.
	for e := range m.commits {
		if e < m.epoch.Load() {
			delete(m.commits, e)
		}
	}
	m.welcomes = nil
	m.joinedAt.Store(time.Now().UnixNano())
	close(m.joinedCh)
	m.emit(Event{Type: EventJoined, Members: m.memberCount(ctx)})
	m.log.Info("joined", "epoch", m.epoch.Load())
	return nil
}

// Members returns the identities of the current epoch's members, sorted.
func (m *Member) Members(ctx context.Context) ([]string, error) {
	if m.isRemoved.Load() {
		return nil, ErrRemoved
	}
	ids, err := m.mls.MemberIdentities(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, string(id))
	}
	slices.Sort(out)
	return out, nil
}

func (m *Member) memberCount(ctx context.Context) int {
	ids, err := m.mls.MemberIdentities(ctx)
	if err != nil {
		return 0
	}
	return len(ids)
}

// install exports the current epoch and installs it in the schedule.
func (m *Member) install(ctx context.Context) error {
	ks, err := m.mls.Export(ctx, m.cfg.Suite.KeySize())
	if err != nil {
		return err
	}
	// An epoch that removed someone is sealed with at once: waiting for
	// acknowledgements would keep using keys the removed member holds.
	ids, err := m.mls.MemberIdentities(ctx)
	if err != nil {
		return err
	}
	cur := make(map[string]bool, len(ids))
	for _, id := range ids {
		cur[string(id)] = true
	}
	removal := false
	for id := range m.prevIDs {
		removal = removal || !cur[id]
	}
	m.prevIDs = cur
	err = m.sched.Install(keyschedule.Epoch{
		Number: ks.Epoch, BaseKey: ks.BaseKey, GroupSize: int(ks.GroupSize),
		Index: uint64(ks.LeafIndex), Members: ks.Members, Immediate: removal,
	})
	if err != nil && !errors.Is(err, keyschedule.ErrStaleEpoch) {
		return fmt.Errorf("group: install epoch %d: %w", ks.Epoch, err)
	}
	m.epoch.Store(ks.Epoch)
	m.ack(ks.Epoch, ks.LeafIndex)
	return nil
}

// ack tells the other members, through the CS, that we hold epoch. It runs
// in the background: the loop must not wait on it, and a lost ack costs a
// sender only its roll-over timeout.
func (m *Member) ack(epoch uint64, leaf uint32) {
	if m.cfg.RolloverTimeout <= 0 || m.noAcks.Load() {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
		defer cancel()
		err := m.cfg.CS.Ack(ctx, m.cfg.Group, epoch, leaf)
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

// acked handles an EpochAck from the ack track.
func (m *Member) acked(payload []byte) {
	a, err := coord.UnmarshalEpochAck(payload)
	if err != nil || string(a.GroupID) != m.cfg.Group {
		return
	}
	m.acksIn.Add(1)
	_ = m.sched.Acknowledge(a.Epoch, uint64(a.Leaf))
}

func (m *Member) subscribe(ctx context.Context, track string) (*moq.Subscription, error) {
	sub, err := m.cfg.Session.Subscribe(ctx, m.ns, track)
	if err != nil {
		return nil, fmt.Errorf("group: subscribe %s: %w", track, err)
	}
	return sub, nil
}

// reader feeds one track's objects into the loop and re-subscribes (with
// backoff) when the subscription ends, e.g. because the CS restarted.
func (m *Member) reader(track string, sub *moq.Subscription) {
	defer m.wg.Done()
	k := map[string]kind{moqforward.TrackCommit: kCommit, moqforward.TrackWelcome: kWelcome, moqforward.TrackRequest: kRequest}[track]
	isAck := track == moqforward.TrackAck
	// Every SUBSCRIBE uses a request ID of the session, and the peer grants
	// few (moq: 100 to start): re-subscribe slowly, and reset the backoff
	// only after a subscription lived a while. Meanwhile the archive
	// (sync) keeps the member up to date.
	const minBackoff, maxBackoff = 500 * time.Millisecond, 5 * time.Second
	rctx := m.ctx
	if k == kWelcome {
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
			case m.in <- item{k: k, num: o.GroupID, data: o.Payload}:
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
		s, err := m.cfg.Session.Subscribe(ctx, m.ns, track)
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
		case m.in <- item{k: kResubscribed}:
		case <-m.ctx.Done():
			_ = sub.Close()
			return
		}
	}
}

// Commit commits the pending requests now (whatever the policy) and
// reports whether our commit won. With nothing pending it returns at once.
func (m *Member) Commit(ctx context.Context) (CommitResult, error) {
	return m.do(ctx, cmd{commit: true})
}

// Leave sends a leave request (our own Remove proposal, re-proposed in
// every new epoch until it is committed) and waits until a commit removed
// us, or ctx ends.
func (m *Member) Leave(ctx context.Context) error {
	if _, err := m.do(ctx, cmd{leave: true}); err != nil {
		return err
	}
	select {
	case <-m.removedCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Member) do(ctx context.Context, c cmd) (CommitResult, error) {
	if !m.isJoined.Load() {
		return CommitResult{}, ErrNotJoined
	}
	c.reply = make(chan cmdReply, 1)
	select {
	case m.cmds <- c:
	case <-ctx.Done():
		return CommitResult{}, ctx.Err()
	case <-m.ctx.Done():
		return CommitResult{}, ErrClosed
	}
	select {
	case r := <-c.reply:
		return r.res, r.err
	case <-ctx.Done():
		return CommitResult{}, ctx.Err()
	}
}

// Close stops the member (it does not leave the group).
func (m *Member) Close() error {
	m.cancel()
	m.wg.Wait()
	return m.mls.Close()
}

// ---- the loop ----

func (m *Member) loop() {
	defer m.wg.Done()
	poll := time.NewTicker(m.cfg.PollInterval)
	defer poll.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ctx := m.ctx
	m.sync(ctx, false)
	for {
		m.armTimer(timer)
		select {
		case <-ctx.Done():
			return
		case it := <-m.in:
			m.handle(ctx, it)
		drain:
			for range 64 {
				select {
				case it := <-m.in:
					m.handle(ctx, it)
				default:
					break drain
				}
			}
			m.progress(ctx)
		case c := <-m.cmds:
			var r cmdReply
			switch {
			case m.isRemoved.Load():
				r.err = ErrRemoved
			case c.commit:
				r.res, r.err = m.commit(ctx)
			case c.leave:
				r.err = m.startLeave(ctx)
			}
			c.reply <- r
		case <-poll.C:
			m.sched.Tick()
			m.sync(ctx, true)
		case <-timer.C:
			m.commitAt = time.Time{}
			if !m.cfg.Manual && m.isJoined.Load() && !m.isRemoved.Load() {
				if _, err := m.commit(ctx); err != nil {
					m.log.Warn("auto commit failed", "err", err)
					m.emit(Event{Type: EventError, Err: err})
				}
			}
		}
		if m.isRemoved.Load() {
			return
		}
	}
}

func (m *Member) handle(ctx context.Context, it item) {
	switch it.k {
	case kCommit:
		if !m.isJoined.Load() || it.num >= m.epoch.Load() {
			m.commits[it.num] = it.data
		}
	case kWelcome:
		if !m.isJoined.Load() && !m.welcomeDone[it.num] {
			m.welcomes[it.num] = it.data
		}
	case kRequest:
		if it.num >= m.nextSeq {
			m.requests[it.num] = it.data
		}
	case kResubscribed:
		m.sync(ctx, false)
	}
}

// progress applies whatever the buffered objects allow.
func (m *Member) progress(ctx context.Context) {
	if !m.isJoined.Load() {
		m.tryWelcomes(ctx)
		if !m.isJoined.Load() {
			return
		}
	}
	m.applyRequests(ctx)
	m.applyCommits(ctx)
	m.schedule()
}

func (m *Member) tryWelcomes(ctx context.Context) {
	es := make([]uint64, 0, len(m.welcomes))
	for e := range m.welcomes {
		es = append(es, e)
	}
	slices.Sort(es)
	for _, e := range es {
		w := m.welcomes[e]
		delete(m.welcomes, e)
		m.welcomeDone[e] = true
		ok, err := m.mls.Join(ctx, w)
		if err != nil {
			m.log.Warn("welcome failed", "epoch", e, "err", err)
			continue
		}
		if ok {
			if err := m.becameMember(ctx); err != nil {
				m.emit(Event{Type: EventError, Err: err})
			}
			m.applyRequests(ctx)
			m.applyCommits(ctx)
			return
		}
	}
}

// applyRequests handles requests in sequence order: joins are remembered
// for committing, leave proposals are processed (mls-go commits them by
// reference, so every member needs them) in their epoch.
func (m *Member) applyRequests(ctx context.Context) {
	for {
		data, ok := m.requests[m.nextSeq]
		if !ok {
			return
		}
		delete(m.requests, m.nextSeq)
		m.nextSeq++
		req, err := coord.UnmarshalRequest(data)
		if err != nil || string(req.GroupID) != m.cfg.Group {
			continue
		}
		switch req.Type {
		case coord.RequestJoin:
			id, err := keyPackageIdentity(req.Body)
			if err != nil || string(id) == m.cfg.Identity {
				continue
			}
			m.joins = slices.DeleteFunc(m.joins, func(j pendingJoin) bool { return bytes.Equal(j.identity, id) })
			m.joins = append(m.joins, pendingJoin{identity: id, kp: req.Body, seen: time.Now()})
		case coord.RequestLeave:
			e, leaf, err := proposalSender(req.Body)
			if err != nil || e < m.epoch.Load() {
				continue
			}
			if m.leaves[e] == nil {
				m.leaves[e] = map[uint32][]byte{}
			}
			m.leaves[e][leaf] = req.Body
			if e == m.epoch.Load() {
				m.processLeave(ctx, req.Body)
			}
		}
	}
}

func (m *Member) processLeave(ctx context.Context, msg []byte) {
	if m.stagedCommit != nil {
		return // processed after the staged commit is resolved (see afterEpoch)
	}
	if err := m.mls.ProcessProposal(ctx, msg); err != nil {
		// Our own proposal is already stored; duplicates fail harmlessly.
		m.log.Debug("leave proposal not stored", "err", err)
	}
}

// applyCommits applies buffered commits in epoch order. When a later
// commit is buffered but ours is missing (lost on MoQ), it fetches the
// missing one from the CS archive.
func (m *Member) applyCommits(ctx context.Context) {
	for !m.isRemoved.Load() && m.stagedCommit == nil {
		e := m.epoch.Load()
		c, ok := m.commits[e]
		if !ok {
			later := false
			for k := range m.commits {
				later = later || k > e
			}
			if !later {
				return
			}
			var err error
			if c, err = m.fetchCommit(ctx, e); err != nil {
				return
			}
		}
		delete(m.commits, e)
		if err := m.applyCommit(ctx, e, c); err != nil {
			return
		}
	}
}

// applyCommit processes one commit; on an unknown proposal reference it
// fetches the requests it missed and tries again.
func (m *Member) applyCommit(ctx context.Context, e uint64, c []byte) error {
	err := m.mls.ProcessCommit(ctx, e, c)
	if err != nil && !errors.Is(err, mlsgroup.ErrRemoved) && !errors.Is(err, mlsgroup.ErrStaleCommit) {
		// Most likely a leave proposal we have not stored (the commit
		// refers to it): fetch missed requests, store this epoch's
		// proposals again, retry.
		m.fetchRequests(ctx)
		for _, p := range m.leaves[e] {
			m.processLeave(ctx, p)
		}
		err = m.mls.ProcessCommit(ctx, e, c)
	}
	switch {
	case errors.Is(err, mlsgroup.ErrStaleCommit):
		return nil
	case errors.Is(err, mlsgroup.ErrRemoved):
		m.removed()
		return err
	case err != nil:
		m.commits[e] = c // keep it; retried on the next poll
		m.log.Warn("commit not applied; will retry", "epoch", e, "err", err)
		m.emit(Event{Type: EventError, Err: err})
		return err
	}
	if err := m.afterEpoch(ctx); err != nil {
		return err
	}
	m.emit(Event{Type: EventEpoch, Members: m.memberCount(ctx)})
	return nil
}

func (m *Member) removed() {
	if m.isRemoved.CompareAndSwap(false, true) {
		m.log.Info("removed from the group", "epoch", m.epoch.Load())
		m.emit(Event{Type: EventRemoved})
		close(m.removedCh)
	}
}

// afterEpoch runs after every epoch change: install keys, drop obsolete
// state, store leave proposals of the new epoch, re-propose our leave.
func (m *Member) afterEpoch(ctx context.Context) error {
	if err := m.install(ctx); err != nil {
		m.emit(Event{Type: EventError, Err: err})
		return err
	}
	e := m.epoch.Load()
	for k := range m.leaves {
		if k < e {
			delete(m.leaves, k)
		}
	}
	for k := range m.commits {
		if k < e {
			delete(m.commits, k)
		}
	}
	// install just read the epoch's members into prevIDs.
	m.joins = slices.DeleteFunc(m.joins, func(j pendingJoin) bool { return m.prevIDs[string(j.identity)] })
	m.pendingN.Store(int64(len(m.joins)))
	if m.leaving {
		// First: mlsgroup.Leave drops the stored proposals of this epoch.
		m.leavePosted = false
		m.leaveMsg = nil
		m.postLeave(ctx)
	}
	for _, p := range m.leaves[e] {
		m.processLeave(ctx, p)
	}
	return nil
}

// fetchRequests gets requests we did not receive on the RequestTrack from
// the CS archive.
func (m *Member) fetchRequests(ctx context.Context) {
	_, next, err := m.cfg.CS.State(ctx, m.cfg.Group)
	if err != nil {
		return
	}
	m.fetchRequestsBelow(ctx, next)
}

// fetchRequestsBelow fetches the requests with sequence numbers below next
// that we have not received, and applies them.
func (m *Member) fetchRequestsBelow(ctx context.Context, next uint64) {
	for s := m.nextSeq; s < next; s++ {
		if _, ok := m.requests[s]; ok {
			continue
		}
		data, err := m.fetchRequest(ctx, s)
		if err != nil {
			break
		}
		m.requests[s] = data
	}
	m.applyRequests(ctx)
}

// applyBelow applies commits, from the buffer or the CS archive, until
// the member is at epoch `to` (or removed, or a commit is staged).
func (m *Member) applyBelow(ctx context.Context, to uint64) {
	for m.stagedCommit == nil && !m.isRemoved.Load() && m.epoch.Load() < to {
		e := m.epoch.Load()
		c, ok := m.commits[e]
		if !ok {
			var err error
			if c, err = m.fetchCommit(ctx, e); err != nil {
				return
			}
		}
		delete(m.commits, e)
		if m.applyCommit(ctx, e, c) != nil {
			return
		}
	}
}

// sync compares with the CS state and fills gaps from its archive; it also
// retries outstanding posts. With grace (the periodic poll) it fetches only
// items the CS had already decided at the previous poll: they had a whole
// interval to arrive on MoQ, so fetching them is not a race with MoQ.
func (m *Member) sync(ctx context.Context, grace bool) {
	if m.stagedCommit != nil {
		m.retryStaged(ctx)
	}
	if m.welcomeOut != nil {
		m.postWelcome(ctx)
	}
	if m.leaving && !m.leavePosted {
		m.postLeave(ctx)
	}
	m.drain(ctx)
	csEpoch, next, err := m.cfg.CS.State(ctx, m.cfg.Group)
	if err != nil {
		return
	}
	epochBound, seqBound := csEpoch, next
	if grace {
		epochBound, seqBound = min(csEpoch, m.prevEpoch), min(next, m.prevNext)
	}
	m.prevEpoch, m.prevNext = csEpoch, next
	if !m.isJoined.Load() {
		for e := m.welcomeFrom; e < epochBound; e++ {
			if m.welcomeDone[e] {
				continue
			}
			if _, ok := m.welcomes[e]; ok {
				continue
			}
			w, err := m.fetchWelcome(ctx, e)
			if err != nil {
				continue
			}
			m.welcomes[e] = w
		}
		m.tryWelcomes(ctx)
		if !m.isJoined.Load() {
			return
		}
	}
	m.fetchRequestsBelow(ctx, seqBound)
	m.applyBelow(ctx, epochBound)
	m.applyCommits(ctx)
	m.schedule()
}

// ---- committing ----

// rank is our position among members that are not leaving, by leaf index
// (0 = designated committer), or -1 if we are leaving.
func (m *Member) rank(ctx context.Context) int {
	if m.leaving {
		return -1
	}
	ids, err := m.mls.MemberIdentities(ctx)
	if err != nil {
		return -1
	}
	leaving := m.leaves[m.epoch.Load()]
	leaves := make([]uint32, 0, len(ids))
	for l := range ids {
		if _, out := leaving[l]; !out {
			leaves = append(leaves, l)
		}
	}
	sort.Slice(leaves, func(i, j int) bool { return leaves[i] < leaves[j] })
	for r, l := range leaves {
		if string(ids[l]) == m.cfg.Identity {
			return r
		}
	}
	return -1
}

func (m *Member) hasWork() bool {
	return len(m.joins) > 0 || len(m.leaves[m.epoch.Load()]) > 0
}

// schedule arms the auto-commit deadline according to our rank.
func (m *Member) schedule() {
	m.pendingN.Store(int64(len(m.joins)))
	if m.cfg.Manual || !m.isJoined.Load() || m.isRemoved.Load() || !m.hasWork() {
		m.commitAt = time.Time{}
		return
	}
	if !m.commitAt.IsZero() {
		return
	}
	r := m.rank(context.Background())
	if r < 0 || r > m.cfg.MaxBackups {
		return
	}
	m.commitAt = time.Now().Add(m.cfg.CommitDelay + time.Duration(r)*m.cfg.BackupDelay)
}

func (m *Member) armTimer(t *time.Timer) {
	if m.commitAt.IsZero() {
		t.Reset(time.Hour)
		return
	}
	t.Reset(max(time.Until(m.commitAt), 0))
}

// commit stages a commit of the pending requests and posts it; on 409 it
// catches up and tries again (bounded).
func (m *Member) commit(ctx context.Context) (CommitResult, error) {
	var res CommitResult
	if m.stagedCommit != nil {
		m.retryStaged(ctx)
		if m.stagedCommit != nil {
			return res, errors.New("group: a commit is still awaiting the CS's answer")
		}
	}
	if m.welcomeOut != nil {
		m.postWelcome(ctx)
	}
	for attempt := 0; attempt < 8; attempt++ {
		res.Epoch = m.epoch.Load()
		if m.leaving || m.isRemoved.Load() {
			return res, nil
		}
		ids, err := m.mls.MemberIdentities(ctx)
		if err != nil {
			return res, err
		}
		added := 0
		seen := map[string]bool{}
		for _, id := range ids {
			seen[string(id)] = true
		}
		var keep []pendingJoin
		for _, j := range m.joins {
			if seen[string(j.identity)] {
				continue
			}
			if err := m.mls.AddMember(ctx, j.kp); err != nil {
				m.log.Warn("dropping join request", "identity", string(j.identity), "err", err)
				continue
			}
			seen[string(j.identity)] = true
			keep = append(keep, j)
			added++
		}
		m.joins = keep
		if added == 0 && len(m.leaves[m.epoch.Load()]) == 0 {
			return res, nil
		}
		start := time.Now()
		e, c, err := m.mls.StageCommit(ctx)
		if err != nil {
			return res, err
		}
		m.stagedCommit = &staged{epoch: e, commit: c, start: start, added: added}
		won, conflict, err := m.postStaged(ctx)
		if err != nil {
			return res, err // kept staged; retried on the next poll
		}
		if won {
			res.Won = true
			res.Epoch = m.epoch.Load()
			res.CommitBytes = len(c)
			res.WelcomeBytes = m.lastWelcome
			return res, nil
		}
		if conflict != nil {
			res.Conflicts++
			m.catchUp(ctx, conflict.Epoch)
		}
	}
	return res, errors.New("group: commit kept losing; giving up for now")
}

// postStaged posts the staged commit and resolves it: won (confirmed,
// epoch installed, Welcome posted), conflict (discarded), or err (left
// staged: the outcome is unknown; the identical request is retried later,
// which the CS answers 200 if it had accepted it).
func (m *Member) postStaged(ctx context.Context) (won bool, conflict *coord.EpochConflictError, err error) {
	st := m.stagedCommit
	err = m.cfg.CS.Commit(ctx, m.cfg.Group, st.epoch, st.commit, nil)
	switch {
	case err == nil:
		accepted := time.Now()
		rtt := accepted.Sub(st.start)
		m.stagedCommit = nil
		w, err := m.mls.ConfirmCommit(ctx)
		if err != nil {
			return false, nil, err
		}
		m.lastWelcome = len(w)
		if w != nil {
			st.welcome = w
			m.welcomeOut = st
		}
		if err := m.afterEpoch(ctx); err != nil {
			return false, nil, err
		}
		m.postWelcome(ctx)
		m.emit(Event{Type: EventCommitted, Time: accepted, Members: m.memberCount(ctx), CommitBytes: len(st.commit),
			WelcomeBytes: len(w), CommitRTT: rtt, Added: st.added})
		return true, nil, nil
	case errors.As(err, &conflict):
		m.stagedCommit = nil
		if derr := m.mls.DiscardCommit(ctx); derr != nil {
			return false, nil, derr
		}
		m.emit(Event{Type: EventConflict})
		return false, conflict, nil
	default:
		return false, nil, err
	}
}

// postWelcome sends the late Welcome (the identical CommitRequest plus the
// Welcome); on failure it stays pending and sync retries it.
func (m *Member) postWelcome(ctx context.Context) {
	st := m.welcomeOut
	if st == nil {
		return
	}
	if err := m.cfg.CS.Commit(ctx, m.cfg.Group, st.epoch, st.commit, st.welcome); err != nil {
		m.log.Warn("posting the Welcome failed; will retry", "epoch", st.epoch, "err", err)
		return
	}
	m.welcomeOut = nil
}

func (m *Member) retryStaged(ctx context.Context) {
	won, conflict, err := m.postStaged(ctx)
	if err != nil || won {
		return
	}
	if conflict != nil {
		m.catchUp(ctx, conflict.Epoch)
	}
}

// catchUp applies commits up to (excluding) epoch `to`, from the buffer or
// the CS archive.
func (m *Member) catchUp(ctx context.Context, to uint64) {
	m.drain(ctx)
	m.applyRequests(ctx)
	m.applyBelow(ctx, to)
}

// drain buffers the objects the readers have queued. A re-subscription
// signal met here is dropped: the caller is syncing already, and the
// periodic poll fetches anything it leaves out.
func (m *Member) drain(ctx context.Context) {
	for {
		select {
		case it := <-m.in:
			if it.k != kResubscribed {
				m.handle(ctx, it)
			}
		default:
			return
		}
	}
}

// ---- leaving ----

func (m *Member) startLeave(ctx context.Context) error {
	if m.leaving {
		return nil
	}
	m.leaving = true
	m.commitAt = time.Time{}
	m.postLeave(ctx)
	return nil
}

// postLeave makes (if needed) and sends our Remove proposal for the current
// epoch.
func (m *Member) postLeave(ctx context.Context) {
	if m.isRemoved.Load() || m.stagedCommit != nil {
		return
	}
	e := m.epoch.Load()
	if m.leaveMsg == nil || m.leaveEpoch != e {
		msg, err := m.mls.Leave(ctx)
		if err != nil {
			m.log.Warn("leave proposal failed", "err", err)
			return
		}
		m.leaveMsg, m.leaveEpoch, m.leavePosted = msg, e, false
	}
	if err := m.cfg.CS.Leave(ctx, m.cfg.Group, m.leaveMsg); err != nil {
		m.log.Warn("leave request failed; will retry", "err", err)
		return
	}
	m.leavePosted = true
}

func (m *Member) counted(k int, data []byte, err error) ([]byte, error) {
	if err == nil {
		m.fetches[k].Add(1)
	}
	return data, err
}

func (m *Member) fetchCommit(ctx context.Context, epoch uint64) ([]byte, error) {
	d, err := m.cfg.CS.CommitAt(ctx, m.cfg.Group, epoch)
	return m.counted(0, d, err)
}

func (m *Member) fetchWelcome(ctx context.Context, epoch uint64) ([]byte, error) {
	d, err := m.cfg.CS.WelcomeAt(ctx, m.cfg.Group, epoch)
	return m.counted(1, d, err)
}

func (m *Member) fetchRequest(ctx context.Context, seq uint64) ([]byte, error) {
	d, err := m.cfg.CS.RequestAt(ctx, m.cfg.Group, seq)
	return m.counted(2, d, err)
}
