package group

import (
	"errors"
	"fmt"
	"maps"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/mlsgroup"
)

// Applying other members' commits, strictly in epoch order.

// repair is a commit that failed once: most likely it refers to a leave
// proposal we missed. The core reads the CS's state, fetches the requests
// it lacks, stores the epoch's proposals again and retries the commit.
type repair struct {
	epoch    uint64
	data     []byte
	src      source
	answered bool   // the state read was answered
	seqTo    uint64 // requests to have before retrying
}

// applyCommits applies buffered commits while the next one is there.
func (c *core) applyCommits() {
	for c.joined && !c.removed && c.staged == nil && c.repair == nil {
		e := c.epoch
		b, ok := c.commits[e]
		if !ok {
			return
		}
		delete(c.commits, e)
		if !c.processCommit(e, b.data, b.src) {
			return
		}
	}
}

// processCommit processes the commit made in epoch e (from MoQ or the
// archive). It reports whether the member moved on to the next epoch.
func (c *core) processCommit(e uint64, data []byte, src source) bool {
	err := c.mls.ProcessCommit(c.ctx, e, data)
	if errors.Is(err, mlsgroup.ErrRefused) {
		return c.commitOutcome(e, src, err) // a missed proposal would not help
	}
	if err != nil && !errors.Is(err, mlsgroup.ErrRemoved) && !errors.Is(err, mlsgroup.ErrStaleCommit) {
		c.repair = &repair{epoch: e, data: data, src: src}
		c.emit(actFetchState{Purpose: stateRepair})
		return false
	}
	return c.commitOutcome(e, src, err)
}

// commitOutcome handles the result of ProcessCommit.
func (c *core) commitOutcome(e uint64, src source, err error) bool {
	switch {
	case errors.Is(err, mlsgroup.ErrStaleCommit):
		return true
	case errors.Is(err, mlsgroup.ErrRemoved):
		c.setRemoved()
		return false
	case err != nil && src == fromMoQ:
		// Anyone who can publish on the relay could have sent it, or a
		// member with a bug: the CS decides which commit won the epoch,
		// so take the archived one instead (planFetches asks for it).
		if c.badMoQ == nil {
			c.badMoQ = map[uint64]bool{}
		}
		c.badMoQ[e] = true
		c.log.Warn("commit object from MoQ cannot be processed; fetching the CS's", "epoch", e, "err", err)
		return false
	case err != nil:
		c.acceptedCommitFailed(e, err)
		return false
	}
	if err := c.afterEpoch(); err != nil {
		c.errorEvent(err)
		return false
	}
	c.event(Event{Type: EventEpoch, Members: c.memberCount()})
	return true
}

// acceptedCommitFailed: the commit the CS accepted for epoch e cannot be
// processed. The member stays on its last good epoch (its keys are still
// installed: media flows), raises the event once, and fetches the
// archive's commit for e again at every poll: the archive is the
// authority, and the CS may withdraw the commit (docs/security.md). If the
// commit brought a refused credential, the member also stops sending: the
// others moved on with someone it does not accept.
func (c *core) acceptedCommitFailed(e uint64, err error) {
	c.sync.held[fetchKey{trackCommit, e}] = true // until the next poll
	if c.failedAt == nil {
		c.failedAt = map[uint64]bool{}
	}
	first := !c.failedAt[e]
	c.failedAt[e] = true
	if errors.Is(err, mlsgroup.ErrRefused) {
		if !c.refused {
			c.refused = true
			c.emit(actSending{On: false})
		}
		if first {
			c.refuse(fmt.Errorf("group: the accepted commit of epoch %d: %w", e, err))
		}
		return
	}
	if first {
		c.log.Error("the accepted commit cannot be processed; staying on the last good epoch", "epoch", e, "err", err)
		c.event(Event{Type: EventStuck, Err: fmt.Errorf("group: the accepted commit of epoch %d: %w", e, err)})
		c.report = &e
		c.emit(actReportUnprocessable{Epoch: e})
	}
}

// unprocessablePosted handles the CS's answer to our report: withdrawn
// (the group is back at epoch e: take the next commit for it), too early
// (report again at the next poll), or refused (someone processed it: the
// commit stays, and so do we, on our last good epoch).
func (c *core) unprocessablePosted(e uint64, err error) {
	if c.report == nil || *c.report != e {
		return
	}
	var se *coord.StatusError
	switch {
	case err == nil, errors.As(err, &se) && se.Code == 404:
		// Withdrawn, on our report or (404) another member's.
		c.log.Warn("the CS withdrew the unprocessable commit", "epoch", e)
		c.withdrawn(e)
	case errors.As(err, &se) && se.Code == 409:
		c.log.Error("the CS keeps the commit we cannot process", "epoch", e, "err", err)
		c.report = nil
	default:
		c.reportDue = true
	}
}

// withdrawn forgets everything about the commit of epoch e, which the CS
// no longer has: the next commit for e is taken from MoQ or the archive.
func (c *core) withdrawn(e uint64) {
	delete(c.commits, e)
	delete(c.badMoQ, e)
	delete(c.failedAt, e)
	delete(c.sync.held, fetchKey{trackCommit, e})
	c.sync.epochTo = min(c.sync.epochTo, e)
	c.report, c.reportDue = nil, false
}

func (c *core) repairState(in inState) {
	r := c.repair
	if r == nil {
		return
	}
	r.answered = true
	if in.Err == nil {
		r.seqTo = in.NextSeq
		c.sync.seqTo = max(c.sync.seqTo, in.NextSeq)
	}
}

// continueRepair retries the failed commit once the requests it may need
// are in (or could not be fetched).
func (c *core) continueRepair() {
	r := c.repair
	if r == nil || !r.answered || !c.requestsSettled(r.seqTo) {
		return
	}
	c.repair = nil
	for _, p := range c.leaves[r.epoch] {
		c.processLeave(p)
	}
	err := c.mls.ProcessCommit(c.ctx, r.epoch, r.data)
	c.commitOutcome(r.epoch, r.src, err)
}

// afterEpoch runs after every epoch change: install keys, drop obsolete
// state, store leave proposals of the new epoch, re-propose our leave.
func (c *core) afterEpoch() error {
	if err := c.install(); err != nil {
		return err
	}
	e := c.epoch
	past := func(k uint64) bool { return k < e }
	maps.DeleteFunc(c.leaves, func(k uint64, _ map[uint32][]byte) bool { return past(k) })
	maps.DeleteFunc(c.commits, func(k uint64, _ buffered) bool { return past(k) })
	maps.DeleteFunc(c.badMoQ, func(k uint64, _ bool) bool { return past(k) })
	maps.DeleteFunc(c.failedAt, func(k uint64, _ bool) bool { return past(k) })
	c.dropJoined() // install just read the epoch's members into prevIDs
	if c.leave.leaving {
		// First: mlsgroup.Leave drops the stored proposals of this epoch.
		c.leave.posted = false
		c.leave.msg = nil
		c.postLeave()
	}
	for _, p := range c.leaves[e] {
		c.processLeave(p)
	}
	return nil
}
