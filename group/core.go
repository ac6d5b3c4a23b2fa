package group

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/mlsgroup"
)

// mlsMember is what the core uses of *mlsgroup.Member. MLS is local
// computation, so the core calls it synchronously; tests may use real
// mlsgroup members or a fake.
type mlsMember interface {
	KeyPackage(ctx context.Context) ([]byte, error)
	Create(ctx context.Context) error
	Join(ctx context.Context, welcome []byte) (bool, error)
	KeyPackageIdentity(keyPackage []byte) (identity.Identity, error)
	AddMember(ctx context.Context, keyPackage []byte) error
	ReplaceMember(ctx context.Context, keyPackage []byte) error
	RemoveMember(ctx context.Context, name string) error
	Leave(ctx context.Context) ([]byte, error)
	ProcessProposal(ctx context.Context, msg []byte) error
	StageCommit(ctx context.Context) (uint64, []byte, error)
	ConfirmCommit(ctx context.Context) ([]byte, error)
	DiscardCommit(ctx context.Context) error
	ProcessCommit(ctx context.Context, epoch uint64, commit []byte) error
	KeyState(ctx context.Context, nk int) (mlsgroup.KeyState, error)
	Roster(ctx context.Context) ([]mlsgroup.RosterEntry, error)
}

var _ mlsMember = (*mlsgroup.Member)(nil)

// buffered is a commit or Welcome waiting for its turn.
type buffered struct {
	data []byte
	src  source
}

// fetchKey names one archived item.
type fetchKey struct {
	track track
	num   uint64
}

// core is the member's deterministic state machine: the whole protocol
// logic of a Member without I/O, goroutines or clocks. step feeds it one
// or more inputs at an explicit time and returns the actions to carry
// out. Its parts live in core_*.go: joining (core_join.go), requests
// (core_requests.go), applying commits (core_apply.go), committing
// (core_commit.go), leaving (core_leave.go), archive sync (core_sync.go).
type core struct {
	cfg coreConfig
	mls mlsMember
	log *slog.Logger
	ctx context.Context // for MLS calls only; never cancelled

	now time.Time
	out []action

	join joinState

	started bool // the join request went through: poll, apply, commit
	joined  bool
	removed bool
	epoch   uint64
	prevIDs map[string]bool // members (name and certificate) of the newest installed epoch

	// Commits that could not be processed. badMoQ: the MoQ object for that
	// epoch failed, so only the CS's archived commit is taken. failedAt:
	// the archived (accepted) commit failed too, and the event was raised.
	badMoQ   map[uint64]bool
	failedAt map[uint64]bool
	// report: the epoch whose accepted commit we report as unprocessable
	// (reportDue: again at the next poll).
	report    *uint64
	reportDue bool
	refused   bool // an accepted commit brought a refused credential: not sending

	commits     map[uint64]buffered
	welcomes    map[uint64]buffered // nil once joined
	welcomeDone map[uint64]bool
	requests    map[uint64][]byte
	nextSeq     uint64
	joins       []pendingJoin
	// parked: joins of an identity that is a member with the same
	// certificate and not silent: added (replacing the old leaf) once that
	// leaf is silent or gone, dropped if the identity sends a newer join.
	parked []pendingJoin
	leaves map[uint64]map[uint32][]byte // epoch -> sender leaf -> proposal

	sync  syncState
	leave leaveState
	live  liveState
	leaf  uint32 // our leaf in the newest installed epoch (retire requests)

	staged           *staged // posted, CS answer not known yet: blocks commits and proposals
	stagedInflight   bool
	welcomeOut       *staged // confirmed; its late Welcome is not accepted yet
	welcomeInfl      bool
	welcomeInflEpoch uint64
	lastWelcome      int
	commitAt         time.Time // armed auto-commit deadline (zero: none)
	op               *commitOp // a Commit in progress (API or automatic)
	repair           *repair   // a commit that failed once; fetching requests before retrying it
	rankCache        rankCache

	armed time.Time // the timer last asked of the driver
}

type pendingJoin struct {
	name        string // verified identity of the KeyPackage
	fingerprint string // of its certificate
	kp          []byte
	seen        time.Time
}

type staged struct {
	epoch  uint64
	commit []byte
	start  time.Time
	added  int
	// removedSilent: silent members the commit removes.
	removedSilent int
	welcome       []byte // after ConfirmCommit
}

// coreConfig is the part of Config the core uses: policy, no I/O handles.
type coreConfig struct {
	Identity, Group          string
	KeySize                  int // SFrame Nk
	Manual                   bool
	CommitDelay, BackupDelay time.Duration
	MaxBackups               int
	PollInterval             time.Duration
	Acks                     bool // coordinated roll-over: acknowledge every epoch
	// LivenessTimeout <= 0: no heartbeats, no removals for silence.
	LivenessTimeout, HeartbeatInterval time.Duration
}

func newCoreConfig(cfg Config, name string) coreConfig {
	return coreConfig{
		Identity: name, Group: cfg.Group, KeySize: cfg.Suite.KeySize(), Manual: cfg.Manual,
		CommitDelay: cfg.CommitDelay, BackupDelay: cfg.BackupDelay, MaxBackups: cfg.MaxBackups,
		PollInterval: cfg.PollInterval, Acks: cfg.RolloverTimeout > 0,
		LivenessTimeout: cfg.LivenessTimeout, HeartbeatInterval: cfg.HeartbeatInterval,
	}
}

// newCore makes a core; cfg must have its defaults (Config.withDefaults).
func newCore(cfg Config, name string, m mlsMember, log *slog.Logger) *core {
	return &core{
		cfg: newCoreConfig(cfg, name), mls: m, log: log, ctx: context.Background(),
		commits: map[uint64]buffered{}, welcomes: map[uint64]buffered{}, welcomeDone: map[uint64]bool{},
		requests: map[uint64][]byte{}, leaves: map[uint64]map[uint32][]byte{},
		sync: syncState{inflight: map[fetchKey]bool{}, held: map[fetchKey]bool{}},
	}
}

// step handles the inputs (all at time now), makes whatever progress they
// allow and returns the actions to carry out, in order.
func (c *core) step(now time.Time, ins ...input) []action {
	c.now = now
	c.out = nil
	for _, in := range ins {
		c.handle(in)
	}
	c.progress()
	c.armTimer()
	out := c.out
	c.out = nil
	return out
}

func (c *core) handle(in input) {
	switch in := in.(type) {
	case inObject:
		c.buffer(in.Track, in.Num, in.Data, fromMoQ)
	case inResubscribed:
		if c.started {
			c.startSync(false)
		}
	case inTick:
		c.tick()
	case inState:
		c.stateAnswer(in)
	case inFetched:
		c.fetched(in)
	case inPosted:
		c.posted(in)
	case inJoin:
		c.startJoin()
	case inAbortJoin:
		c.abortJoin()
	case inCommit:
		c.startCommit(in.Token)
	case inLeave:
		c.startLeave(in.Token)
	case inLiveness:
		c.livenessAnswer(in)
	}
}

func (c *core) posted(in inPosted) {
	switch in.Post {
	case postJoin:
		c.joinPosted(in.Created, in.Err)
	case postCommit:
		c.commitPosted(in.Epoch, in.Err)
	case postWelcome:
		c.welcomePosted(in.Epoch, in.Err)
	case postLeave:
		c.leavePosted(in.Epoch, in.Err)
	case postUnprocessable:
		c.unprocessablePosted(in.Epoch, in.Err)
	case postRetire:
		c.retirePosted(in.Epoch, in.Err)
	}
}

// progress applies whatever the buffered items allow, asks for missing
// ones, continues a Commit in progress and arms the auto-commit.
func (c *core) progress() {
	if !c.started || c.removed {
		return
	}
	if !c.joined {
		c.tryWelcomes()
		if !c.joined {
			c.planFetches()
			return
		}
	}
	c.applyRequests()
	c.continueRepair()
	c.applyCommits()
	c.planFetches()
	c.continueRepair() // the fetches may all be held already
	c.applyCommits()
	c.continueOp()
	c.maybeRetire()
	c.schedule()
}

// tick handles the timer: the join retry, the poll and the auto-commit.
func (c *core) tick() {
	c.armed = time.Time{} // the driver's timer fired: arm it again
	if !c.join.retryAt.IsZero() && !c.now.Before(c.join.retryAt) {
		c.join.retryAt = time.Time{}
		c.requestJoin()
	}
	if c.started && !c.removed && !c.now.Before(c.sync.nextPoll) {
		c.sync.nextPoll = c.sync.nextPoll.Add(c.cfg.PollInterval)
		if !c.sync.nextPoll.After(c.now) {
			c.sync.nextPoll = c.now.Add(c.cfg.PollInterval)
		}
		c.emit(actTickSchedule{})
		c.live.retireRefused = 0 // maybeRetire tries again if we are still last
		c.startSync(true)
	}
	c.liveTick()
	if !c.commitAt.IsZero() && !c.now.Before(c.commitAt) {
		c.commitAt = time.Time{}
		if !c.cfg.Manual && c.joined && !c.removed && c.op == nil {
			c.startCommit(0)
		}
	}
}

// armTimer asks for the earliest deadline, if it changed.
func (c *core) armTimer() {
	var at time.Time
	for _, t := range []time.Time{c.join.retryAt, c.commitAt, c.join.repostAt, c.liveDeadline()} {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	if c.started && !c.removed && (at.IsZero() || c.sync.nextPoll.Before(at)) {
		at = c.sync.nextPoll
	}
	if at.Equal(c.armed) && !at.IsZero() {
		return
	}
	if at.IsZero() && c.armed.IsZero() {
		return
	}
	c.armed = at
	c.emit(actArmTimer{At: at})
}

func (c *core) emit(a action) { c.out = append(c.out, a) }

// event emits an event stamped with the current time and epoch.
func (c *core) event(e Event) {
	if e.Time.IsZero() {
		e.Time = c.now
	}
	if e.Epoch == 0 {
		e.Epoch = c.epoch
	}
	c.emit(actEmit{Event: e})
}

func (c *core) errorEvent(err error) { c.event(Event{Type: EventError, Err: err}) }

func (c *core) memberCount() int {
	r, err := c.mls.Roster(c.ctx)
	if err != nil {
		return 0
	}
	return len(r)
}

// refuse raises EventRefused for a refused credential (the driver counts
// them in Stats.Refused).
func (c *core) refuse(err error) {
	c.log.Warn("credential refused", "err", err)
	c.event(Event{Type: EventRefused, Err: err})
}

// install exports the current epoch and asks for it to be installed in
// the key schedule and acknowledged.
func (c *core) install() error {
	ks, err := c.mls.KeyState(c.ctx, c.cfg.KeySize)
	if err != nil {
		return err
	}
	// An epoch that removed someone (or replaced a member's certificate)
	// is sealed with at once: waiting for acknowledgements would keep
	// using keys the removed leaf holds.
	roster, err := c.mls.Roster(c.ctx)
	if err != nil {
		return err
	}
	cur := make(map[string]bool, len(roster))
	for _, e := range roster {
		cur[e.Name+"/"+e.Fingerprint] = true
	}
	removal, changed := false, len(cur) != len(c.prevIDs)
	for id := range c.prevIDs {
		removal = removal || !cur[id]
	}
	changed = changed || removal
	c.prevIDs = cur
	c.emit(actInstall{Key: ks, Immediate: removal, Roster: roster})
	c.epoch, c.leaf = ks.Epoch, ks.LeafIndex
	c.pruneSilent(roster)
	if c.refused {
		// A good epoch after a refused one: the group is back to members
		// we accept.
		c.refused = false
		c.emit(actSending{On: true})
	}
	if changed {
		c.event(Event{Type: EventRoster, Members: len(roster)})
	}
	if c.cfg.Acks {
		c.emit(actPostAck{Epoch: ks.Epoch, Leaf: ks.LeafIndex})
	}
	return nil
}

// setRemoved: a commit removed us. Nothing more happens after this.
func (c *core) setRemoved() {
	if c.removed {
		return
	}
	c.removed = true
	c.commitAt = time.Time{}
	c.log.Info("removed from the group", "epoch", c.epoch)
	c.event(Event{Type: EventRemoved})
	if c.op != nil {
		c.finishOp(nil)
	}
}

// pendingJoins is how many join requests wait to be committed.
func (c *core) pendingJoins() int { return len(c.joins) }

var errCommitInProgress = errors.New("group: a commit is already in progress")
