package group

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/mlsgroup"
)

// Joining: read the CS's state (lower bounds for our Welcome's epoch and
// for the requests we must handle), POST a join request with a fresh
// KeyPackage, then either create the group (201) or wait for a Welcome
// (200/202) on MoQ or in the archive.

type joinPhase int

const (
	joinIdle       joinPhase = iota
	joinRequesting           // state read / join request under way or waiting to be retried
	joinWaiting              // the CS accepted the request: wait for the Welcome
	joinDone                 // member (or failed for good)
	joinAborted
)

type joinState struct {
	phase       joinPhase
	backoff     time.Duration
	retryAt     time.Time
	welcomeFrom uint64 // CS epoch seen before our join request
	kp          []byte // our join request's KeyPackage
	// repostAt: while waiting for the Welcome, the identical join request
	// is posted again at this time (every liveness timeout). If the group's
	// members are all gone, the CS then retires it and answers 201.
	repostAt       time.Time
	repostInflight bool
}

func (c *core) startJoin() {
	if c.join.phase != joinIdle {
		return
	}
	c.join.phase = joinRequesting
	c.join.backoff = 100 * time.Millisecond
	c.requestJoin()
}

func (c *core) requestJoin() {
	if c.join.phase == joinRequesting {
		c.emit(actFetchState{Purpose: stateJoin})
	}
}

func (c *core) abortJoin() {
	if c.join.phase == joinRequesting {
		c.join.phase = joinAborted
		c.join.retryAt = time.Time{}
	}
}

// joinStateAnswer handles the state read before the join request.
func (c *core) joinStateAnswer(in inState) {
	if c.join.phase != joinRequesting {
		return
	}
	if in.Err != nil && !errors.Is(in.Err, coord.ErrUnknownGroup) {
		c.joinFailed(in.Err)
		return
	}
	c.join.welcomeFrom, c.nextSeq = in.Epoch, in.NextSeq
	for s := range c.requests {
		if s < c.nextSeq {
			delete(c.requests, s)
		}
	}
	kp, err := c.mls.KeyPackage(c.ctx)
	if err != nil {
		c.failJoin(err)
		return
	}
	c.join.kp = kp
	c.emit(actPostJoin{KeyPackage: kp})
}

// repostJoin posts our join request again while we wait for its Welcome.
func (c *core) repostJoin() {
	if c.join.phase != joinWaiting || c.joined || c.join.repostInflight || c.join.kp == nil {
		return
	}
	c.join.repostInflight = true
	c.join.repostAt = time.Time{}
	c.emit(actPostJoin{KeyPackage: c.join.kp})
}

// armRepost arms the next repost of the join request.
func (c *core) armRepost() {
	if c.cfg.LivenessTimeout > 0 && c.join.phase == joinWaiting && !c.joined {
		c.join.repostAt = c.now.Add(c.cfg.LivenessTimeout)
	}
}

// joinFailed retries transport errors and 5xx with backoff; other answers
// end the join.
func (c *core) joinFailed(err error) {
	var se *coord.StatusError
	if errors.As(err, &se) && se.Code == 429 {
		// Too many requests or a join of ours still pending: the CS says
		// when to come back.
		c.log.Info("join request deferred by the CS; retrying", "reason", se.Reason, "after", se.RetryAfter)
		c.join.retryAt = c.now.Add(max(c.join.backoff, se.RetryAfter))
		c.join.backoff = min(2*c.join.backoff, 2*time.Second)
		return
	}
	if errors.As(err, &se) && se.Code < 500 {
		c.failJoin(fmt.Errorf("group: join request refused: %w", err))
		return
	}
	c.log.Warn("join request failed; retrying", "err", err)
	c.join.retryAt = c.now.Add(c.join.backoff)
	c.join.backoff = min(2*c.join.backoff, 2*time.Second)
}

func (c *core) failJoin(err error) {
	c.join.phase = joinDone
	c.emit(actJoinDone{Err: err})
}

func (c *core) joinPosted(created bool, err error) {
	if c.join.phase == joinWaiting && c.join.repostInflight {
		c.join.repostInflight = false
		c.repostAnswer(created, err)
		return
	}
	if c.join.phase != joinRequesting {
		return
	}
	if err != nil {
		c.joinFailed(err)
		return
	}
	c.join.phase = joinWaiting
	if created {
		if err := c.mls.Create(c.ctx); err != nil {
			c.failJoin(err)
			return
		}
		if err := c.becameMember(); err != nil {
			c.failJoin(err)
			return
		}
	}
	// From now on the member polls and applies what arrives.
	c.armRepost()
	c.started = true
	c.sync.nextPoll = c.now.Add(c.cfg.PollInterval)
	c.startSync(false)
}

// tryWelcomes tries the buffered Welcomes in epoch order.
func (c *core) tryWelcomes() {
	if c.join.phase != joinWaiting {
		return
	}
	es := make([]uint64, 0, len(c.welcomes))
	for e := range c.welcomes {
		es = append(es, e)
	}
	slices.Sort(es)
	for _, e := range es {
		w := c.welcomes[e]
		delete(c.welcomes, e)
		c.welcomeDone[e] = true
		if c.processWelcome(e, w.data, w.src) {
			return
		}
	}
}

// processWelcome tries one Welcome (MoQ or archive); it reports whether
// we are now a member. Welcomes for others are ignored.
func (c *core) processWelcome(e uint64, w []byte, _ source) bool {
	ok, err := c.mls.Join(c.ctx, w)
	if errors.Is(err, mlsgroup.ErrRefused) {
		// The tree we were invited into holds a credential we do not
		// accept: stay out. Our KeyPackage is spent, so the join ends.
		c.refuse(err)
		c.failJoin(fmt.Errorf("group: the Welcome of epoch %d: %w", e, err))
		return false
	}
	if err != nil {
		c.log.Warn("welcome failed", "epoch", e, "err", err)
		return false
	}
	if !ok {
		return false
	}
	if err := c.becameMember(); err != nil {
		c.errorEvent(err)
	}
	return true
}

// becameMember installs the first epoch and emits EventJoined.
func (c *core) becameMember() error {
	if err := c.install(); err != nil {
		return err
	}
	c.joined = true
	c.join.phase = joinDone
	c.join.repostAt = time.Time{}
	c.live.nextRead = c.now.Add(c.cfg.HeartbeatInterval)
	// Commits for epochs before ours are useless now.
	for e := range c.commits {
		if e < c.epoch {
			delete(c.commits, e)
		}
	}
	c.welcomes = nil
	c.event(Event{Type: EventJoined, Members: c.memberCount()})
	c.log.Info("joined", "epoch", c.epoch)
	return nil
}

// repostAnswer: the CS's answer to the repost of our join request. 201:
// the group's members were all gone, so the CS retired it and we create it
// afresh; 200/202: still queued (or answered as before), keep waiting.
func (c *core) repostAnswer(created bool, err error) {
	if c.joined {
		return
	}
	switch {
	case err != nil:
		c.log.Warn("reposting the join request failed; will retry", "err", err)
		c.armRepost()
	case created:
		c.log.Info("the group was retired while we waited for a Welcome; created it afresh")
		if err := c.mls.Create(c.ctx); err != nil {
			c.failJoin(err)
			return
		}
		c.resetForNewGroup()
		if err := c.becameMember(); err != nil {
			c.failJoin(err)
		}
	default:
		c.armRepost()
	}
}

// resetForNewGroup forgets what we knew of a retired group's tracks: its
// requests and commits are gone, and the new one starts at epoch 0 and
// sequence 0.
func (c *core) resetForNewGroup() {
	clear(c.commits)
	clear(c.requests)
	clear(c.leaves)
	c.welcomes = map[uint64]buffered{}
	clear(c.welcomeDone)
	c.joins = nil
	c.nextSeq = 0
	c.sync = syncState{inflight: map[fetchKey]bool{}, held: map[fetchKey]bool{}, nextPoll: c.sync.nextPoll}
}
