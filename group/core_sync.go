package group

import (
	"errors"
	"time"

	"github.com/moqsframe/moqsframe/coord"
)

// Catch-up from the CS archive. The core keeps bounds (commits below
// epochTo, requests below seqTo, Welcomes below welcomeTo) and asks for
// every missing item under them; a failed fetch is held until the next
// poll, so a CS that cannot answer is not asked again at once.

type syncState struct {
	nextPoll            time.Time
	prevEpoch, prevNext uint64 // CS state at the previous read
	welcomeTo           uint64
	seqTo               uint64
	epochTo             uint64
	inflight            map[fetchKey]bool
	held                map[fetchKey]bool // failed; retried after the next poll
}

// startSync retries outstanding posts and reads the CS's state. With grace
// (the periodic poll) only items the CS had decided at the previous poll
// are fetched: they had a whole interval to arrive on MoQ, so fetching
// them does not race MoQ delivery.
func (c *core) startSync(grace bool) {
	if grace {
		clear(c.sync.held)
	}
	if c.staged != nil {
		c.postStaged()
	}
	if c.welcomeOut != nil {
		c.postWelcome()
	}
	if c.leave.leaving && !c.leave.posted {
		c.postLeave()
	}
	if grace && c.report != nil && c.reportDue {
		c.reportDue = false
		c.emit(actReportUnprocessable{Epoch: *c.report})
	}
	p := stateResync
	if grace {
		p = statePoll
	}
	c.emit(actFetchState{Purpose: p})
}

func (c *core) stateAnswer(in inState) {
	switch in.Purpose {
	case stateJoin:
		c.joinStateAnswer(in)
	case stateRepair:
		c.repairState(in)
	case statePoll, stateResync:
		if errors.Is(in.Err, coord.ErrUnknownGroup) {
			c.groupUnknown()
			return
		}
		if in.Err != nil {
			return
		}
		if c.joined && in.Epoch <= c.epoch && (c.failedAt[c.epoch] || c.badMoQ[c.epoch]) {
			// The CS has no commit for our epoch: the one we could not
			// process was withdrawn (on another member's report), or
			// never accepted (injected on the relay).
			c.withdrawn(c.epoch)
		}
		epochBound, seqBound := in.Epoch, in.NextSeq
		if in.Purpose == statePoll {
			epochBound, seqBound = min(in.Epoch, c.sync.prevEpoch), min(in.NextSeq, c.sync.prevNext)
		}
		c.sync.prevEpoch, c.sync.prevNext = in.Epoch, in.NextSeq
		c.sync.welcomeTo = max(c.sync.welcomeTo, epochBound)
		c.sync.epochTo = max(c.sync.epochTo, epochBound)
		c.sync.seqTo = max(c.sync.seqTo, seqBound)
	}
}

// fetched handles an archive answer.
func (c *core) fetched(in inFetched) {
	k := fetchKey{in.Track, in.Num}
	delete(c.sync.inflight, k)
	switch {
	case in.Skipped:
	case in.Err != nil:
		c.sync.held[k] = true
	default:
		c.buffer(in.Track, in.Num, in.Data, fromArchive)
	}
}

// want asks for an archived item unless it is asked for or held already.
func (c *core) want(t track, num uint64) {
	k := fetchKey{t, num}
	if c.sync.inflight[k] || c.sync.held[k] {
		return
	}
	c.sync.inflight[k] = true
	c.emit(actFetch{Track: t, Num: num})
}

// planFetches asks for the missing items under the bounds. Commits are
// fetched one at a time (the next one is only useful after this one),
// and also when a later commit is buffered: ours was lost on MoQ.
func (c *core) planFetches() {
	if c.removed {
		return
	}
	if !c.joined {
		if c.join.phase != joinWaiting {
			return
		}
		for e := c.join.welcomeFrom; e < c.sync.welcomeTo; e++ {
			if _, ok := c.welcomes[e]; !ok && !c.welcomeDone[e] {
				c.want(trackWelcome, e)
			}
		}
		return
	}
	for s := c.nextSeq; s < c.sync.seqTo; s++ {
		if _, ok := c.requests[s]; !ok {
			c.want(trackRequest, s)
		}
	}
	if c.staged != nil || c.repair != nil {
		return
	}
	e := c.epoch
	if _, ok := c.commits[e]; ok {
		return
	}
	later := e < c.sync.epochTo || c.badMoQ[e]
	for k := range c.commits {
		later = later || k > e
	}
	if later {
		c.want(trackCommit, e)
	}
}

// requestsSettled: every request below seqTo is applied, or its fetch
// failed.
func (c *core) requestsSettled(seqTo uint64) bool {
	for s := c.nextSeq; s < seqTo; s++ {
		if _, ok := c.requests[s]; !ok && !c.sync.held[fetchKey{trackRequest, s}] {
			return false
		}
	}
	return true
}

// commitStalled: the commit of the current epoch is not there and cannot
// be had before the next poll.
func (c *core) commitStalled() bool {
	e := c.epoch
	_, ok := c.commits[e]
	return !ok && !c.sync.inflight[fetchKey{trackCommit, e}]
}

// unwanted reports whether a requested fetch became unnecessary (the item
// arrived on MoQ, or is obsolete); the driver then answers it with
// inFetched{Skipped: true} instead of fetching.
func (c *core) unwanted(a actFetch) bool {
	switch a.Track {
	case trackCommit:
		_, ok := c.commits[a.Num]
		return ok || (c.joined && a.Num < c.epoch) || c.removed
	case trackWelcome:
		_, ok := c.welcomes[a.Num]
		return ok || c.joined || c.welcomeDone[a.Num]
	case trackRequest:
		_, ok := c.requests[a.Num]
		return ok || a.Num < c.nextSeq
	}
	return false
}
