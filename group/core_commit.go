package group

import (
	"errors"
	"time"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/mlsgroup"
)

// Committing: stage a commit of the pending requests, POST it, confirm it
// on 200/202 (then POST the late Welcome) or discard it on 409, catch up
// and try again. Who commits automatically is decided by rank.

// maxCommitAttempts bounds the 409 rounds of one Commit.
const maxCommitAttempts = 8

type opPhase int

const (
	opRetryStaged opPhase = iota + 1 // re-posting a commit staged earlier
	opPosting                        // our new commit is posted
	opCatchingUp                     // lost (409): applying commits up to op.to
)

// commitOp is one Commit (token 0: the automatic one).
type commitOp struct {
	token    uint64
	res      CommitResult
	attempts int
	phase    opPhase
	to       uint64
}

var (
	errStillStaged = errors.New("group: a commit is still awaiting the CS's answer")
	errKeptLosing  = errors.New("group: commit kept losing; giving up for now")
)

func (c *core) startCommit(token uint64) {
	switch {
	case c.removed:
		c.emit(actCommitDone{Token: token, Err: ErrRemoved})
		return
	case !c.joined:
		c.emit(actCommitDone{Token: token, Err: ErrNotJoined})
		return
	case c.op != nil:
		if token != 0 {
			c.emit(actCommitDone{Token: token, Err: errCommitInProgress})
		}
		return
	}
	c.op = &commitOp{token: token}
	if c.staged != nil {
		// Resolve the earlier commit first: the CS answers the identical
		// request 200 if it had accepted it, 409 otherwise.
		c.op.phase = opRetryStaged
		c.postStaged()
		return
	}
	c.postWelcome()
	c.attempt()
}

// attempt stages a commit of the pending work and posts it.
func (c *core) attempt() {
	op := c.op
	op.res.Epoch = c.epoch
	if c.leave.leaving || c.removed {
		c.finishOp(nil)
		return
	}
	if op.attempts >= maxCommitAttempts {
		c.finishOp(errKeptLosing)
		return
	}
	op.attempts++
	roster, err := c.mls.Roster(c.ctx)
	if err != nil {
		c.finishOp(err)
		return
	}
	// Silent members are removed below, unless a join replaces them.
	members := make(map[string]string, len(roster))
	for _, e := range roster {
		members[e.Name] = e.Fingerprint
	}
	added := map[string]bool{}
	var keep []pendingJoin
	for _, j := range c.selectJoins(members) {
		if added[j.name] {
			continue // the same identity twice in one commit
		}
		add := c.mls.AddMember
		if _, in := members[j.name]; in {
			add = c.mls.ReplaceMember
		}
		if err := add(c.ctx, j.kp); err != nil {
			if errors.Is(err, mlsgroup.ErrRefused) {
				c.refuse(err)
			} else {
				c.log.Warn("dropping join request", "identity", j.name, "err", err)
			}
			continue
		}
		added[j.name] = true
		keep = append(keep, j)
	}
	c.park(members, added)
	c.joins = keep
	removed := c.proposeRemovals(roster, added)
	if len(keep) == 0 && len(c.leaves[c.epoch]) == 0 && removed == 0 {
		c.finishOp(nil)
		return
	}
	e, commit, err := c.mls.StageCommit(c.ctx)
	if err != nil {
		c.finishOp(err)
		return
	}
	c.staged = &staged{epoch: e, commit: commit, start: c.now, added: len(keep), removedSilent: removed}
	op.phase = opPosting
	c.postStaged()
}

func (c *core) postStaged() {
	if c.staged == nil || c.stagedInflight {
		return
	}
	c.stagedInflight = true
	c.emit(actPostCommit{Epoch: c.staged.epoch, Commit: c.staged.commit})
}

// commitPosted resolves the staged commit: won (confirmed, epoch
// installed, Welcome posted), conflict (discarded, catch up), or another
// error (left staged: the outcome is unknown; the identical request is
// posted again at the next poll).
func (c *core) commitPosted(epoch uint64, err error) {
	st := c.staged
	if st == nil || st.epoch != epoch || !c.stagedInflight {
		return
	}
	c.stagedInflight = false
	var conflict *coord.EpochConflictError
	switch {
	case err == nil:
		c.commitWon(st)
	case errors.As(err, &conflict):
		c.staged = nil
		if derr := c.mls.DiscardCommit(c.ctx); derr != nil {
			c.opFailed(derr)
			return
		}
		c.event(Event{Type: EventConflict})
		c.sync.epochTo = max(c.sync.epochTo, conflict.Epoch)
		if op := c.op; op != nil {
			if op.phase == opPosting {
				op.res.Conflicts++
			}
			op.phase, op.to = opCatchingUp, conflict.Epoch
		}
		c.afterResolve()
	default:
		c.log.Warn("posting the commit failed; will retry", "epoch", st.epoch, "err", err)
		if op := c.op; op != nil {
			if op.phase == opRetryStaged {
				err = errStillStaged
			}
			c.finishOp(err)
		}
	}
}

func (c *core) commitWon(st *staged) {
	c.staged = nil
	w, err := c.mls.ConfirmCommit(c.ctx)
	if err != nil {
		c.opFailed(err)
		return
	}
	c.lastWelcome = len(w)
	if w != nil {
		st.welcome = w
		c.welcomeOut = st
	}
	if err := c.afterEpoch(); err != nil {
		c.opFailed(err)
		return
	}
	c.postWelcome()
	c.live.removed += uint64(st.removedSilent)
	c.event(Event{Type: EventCommitted, Members: c.memberCount(), CommitBytes: len(st.commit),
		WelcomeBytes: len(w), CommitRTT: c.now.Sub(st.start), Added: st.added, RemovedSilent: st.removedSilent})
	op := c.op
	if op == nil {
		c.afterResolve()
		return
	}
	if op.phase == opPosting {
		op.res.Won = true
		op.res.Epoch = c.epoch
		op.res.CommitBytes = len(st.commit)
		op.res.WelcomeBytes = c.lastWelcome
		c.finishOp(nil)
		return
	}
	c.attempt() // the earlier commit is resolved: now commit what is pending
}

// afterResolve: with the staged commit gone, leave proposals of the epoch
// can be stored again (processLeave skipped them meanwhile).
func (c *core) afterResolve() {
	if c.staged != nil {
		return
	}
	for _, p := range c.leaves[c.epoch] {
		c.processLeave(p)
	}
	if c.leave.leaving && !c.leave.posted {
		c.postLeave()
	}
}

// opFailed ends the Commit in progress with err, or reports err.
func (c *core) opFailed(err error) {
	if c.op != nil {
		c.finishOp(err)
		return
	}
	c.errorEvent(err)
}

// continueOp moves a Commit that lost its epoch on once it caught up (or
// cannot catch up before the next poll).
func (c *core) continueOp() {
	op := c.op
	if op == nil || op.phase != opCatchingUp || c.repair != nil {
		return
	}
	if c.removed || c.epoch >= op.to || c.commitStalled() {
		c.attempt()
	}
}

func (c *core) finishOp(err error) {
	op := c.op
	c.op = nil
	if op.res.Epoch < c.epoch || op.res.Epoch == 0 {
		op.res.Epoch = c.epoch
	}
	if op.token != 0 {
		c.emit(actCommitDone{Token: op.token, Result: op.res, Err: err})
		return
	}
	if err != nil {
		c.log.Warn("auto commit failed", "err", err)
		c.errorEvent(err)
	}
}

// postWelcome sends the late Welcome (the identical CommitRequest plus the
// Welcome); on failure it stays pending and the next poll retries it.
func (c *core) postWelcome() {
	st := c.welcomeOut
	if st == nil || c.welcomeInfl {
		return // an answer is awaited; welcomePosted posts a newer Welcome then
	}
	c.welcomeInfl, c.welcomeInflEpoch = true, st.epoch
	c.emit(actPostCommit{Epoch: st.epoch, Commit: st.commit, Welcome: st.welcome})
}

func (c *core) welcomePosted(epoch uint64, err error) {
	if !c.welcomeInfl || epoch != c.welcomeInflEpoch {
		return
	}
	c.welcomeInfl = false
	st := c.welcomeOut
	switch {
	case st == nil:
	case st.epoch != epoch:
		c.postWelcome() // a later commit of ours won meanwhile
	case err != nil:
		c.log.Warn("posting the Welcome failed; will retry", "epoch", st.epoch, "err", err)
	default:
		c.welcomeOut = nil
	}
}

// rankCache keeps the last rank: it changes only with the epoch or the
// epoch's leave proposals (which only grow), and listing the members costs
// a load of the MLS group state, which large groups feel on every step.
type rankCache struct {
	valid     bool
	epoch     uint64
	nLeaves   int
	silentGen int
	rank      int
}

// rank is our position among members that are neither leaving nor silent, by leaf index
// (0 = designated committer), or -1 if we are leaving.
func (c *core) rank() int {
	if c.leave.leaving {
		return -1
	}
	leaving := c.leaves[c.epoch]
	rc := &c.rankCache
	if rc.valid && rc.epoch == c.epoch && rc.nLeaves == len(leaving) && rc.silentGen == c.live.gen {
		return rc.rank
	}
	r := c.computeRank(leaving)
	*rc = rankCache{valid: true, epoch: c.epoch, nLeaves: len(leaving), silentGen: c.live.gen, rank: r}
	return r
}

func (c *core) computeRank(leaving map[uint32][]byte) int {
	roster, err := c.mls.Roster(c.ctx)
	if err != nil {
		return -1
	}
	r := 0 // the roster is in leaf order
	for _, e := range roster {
		if _, out := leaving[e.Leaf]; out {
			continue
		}
		if c.live.silent[e.Leaf] == e.Name && e.Name != c.cfg.Identity {
			continue // a silent member does not commit: the next one does
		}
		if e.Name == c.cfg.Identity {
			return r
		}
		r++
	}
	return -1
}

func (c *core) hasWork() bool {
	return len(c.joins) > 0 || len(c.leaves[c.epoch]) > 0 || len(c.silentToRemove()) > 0
}

// schedule arms the auto-commit deadline according to our rank.
func (c *core) schedule() {
	if c.cfg.Manual || !c.joined || c.removed || !c.hasWork() || c.op != nil || c.staged != nil {
		// A commit in progress or awaiting its answer re-arms it when resolved.
		c.commitAt = time.Time{}
		return
	}
	if !c.commitAt.IsZero() {
		return
	}
	r := c.rank()
	if r < 0 || r > c.cfg.MaxBackups {
		return
	}
	c.commitAt = c.now.Add(c.cfg.CommitDelay + time.Duration(r)*c.cfg.BackupDelay)
}
