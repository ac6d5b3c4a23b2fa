package coord

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/moqsframe/moqsframe/coord/store"
	"github.com/moqsframe/moqsframe/coord/wire"
)

// Withdrawing an accepted commit that no member can process: the way out
// of a group frozen by a junk commit that an admitted member got accepted
// (docs/security.md). The CS accepts exactly one commit per epoch, so
// without this a commit nobody can process blocks the group for good.
//
//	POST /v1/groups/{group}/commits/{epoch}/unprocessable   (empty body)
//	  200 {"group","epoch"}  the commit of epoch is withdrawn: the group is at
//	                         epoch again and takes the next commit for it
//	  409 reason commit_processed: a member acknowledged epoch+1 (so someone
//	      could process it), the commit is not the newest, or this CS process
//	      did not accept it (acknowledgements are not kept across restarts)
//	  425 reason too_early + Retry-After: sooner than UnprocessableGrace after
//	      the commit was accepted (members acknowledge within that time)
//	  404 unknown group, or no commit for epoch
//
// A withdrawn commit is removed from the archive; objects already sent on
// the CommitTrack stay sent, and members ignore them (they take the
// archive's word for an epoch whose MoQ object failed).

// DefaultUnprocessableGrace is Config.UnprocessableGrace's default.
const DefaultUnprocessableGrace = 5 * time.Second

// Refusal reasons of the unprocessable endpoint (also counted in
// sframe_cs_refused_total).
const (
	ReasonCommitProcessed = "commit_processed"
	ReasonTooEarly        = "too_early"
)

// recentCommits remembers, per group, the newest commit this process
// accepted and whether anyone acknowledged the epoch after it.
type recentCommits struct {
	mu sync.Mutex
	m  map[string]recentCommit
}

type recentCommit struct {
	epoch uint64 // the epoch the commit was made in
	at    time.Time
	acked bool // an ack for epoch+1 arrived
}

func (r *recentCommits) accepted(group string, epoch uint64, now time.Time) {
	r.mu.Lock()
	if r.m == nil {
		r.m = map[string]recentCommit{}
	}
	r.m[group] = recentCommit{epoch: epoch, at: now}
	r.mu.Unlock()
}

func (r *recentCommits) ack(group string, epoch uint64) {
	r.mu.Lock()
	if c, ok := r.m[group]; ok && epoch > c.epoch {
		c.acked = true
		r.m[group] = c
	}
	r.mu.Unlock()
}

func (r *recentCommits) get(group string) (recentCommit, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.m[group]
	return c, ok
}

func (r *recentCommits) forget(group string) {
	r.mu.Lock()
	delete(r.m, group)
	r.mu.Unlock()
}

func (s *Server) handleUnprocessable(w http.ResponseWriter, r *http.Request) {
	const ep = "unprocessable"
	group := r.PathValue("group")
	if !wire.ValidGroupName(group) {
		s.fail(w, ep, http.StatusBadRequest, "", "invalid group name: use 1-255 characters from A-Z a-z 0-9 - . _ ~")
		return
	}
	epoch, err := strconv.ParseUint(r.PathValue("n"), 10, 64)
	if err != nil {
		s.fail(w, ep, http.StatusBadRequest, group, "the epoch must be a decimal number")
		return
	}
	rv, ok := s.store.(store.Reverter)
	if !ok {
		s.fail(w, ep, http.StatusNotImplemented, group, "this CS's store cannot withdraw commits")
		return
	}
	unlock := s.lockGroup(group)
	defer unlock()
	cur, err := s.store.Epoch(r.Context(), group)
	if s.failRead(w, ep, group, err) {
		return
	}
	if epoch >= cur {
		s.fail(w, ep, http.StatusNotFound, group, fmt.Sprintf("no commit for epoch %d (the group is at epoch %d)", epoch, cur))
		return
	}
	rc, known := s.recent.get(group)
	switch {
	case epoch+1 != cur || !known || rc.epoch != epoch || rc.acked:
		s.refuse(w, ep, group, "", &RefusedError{Code: http.StatusConflict, Reason: ReasonCommitProcessed,
			Message: fmt.Sprintf("the commit of epoch %d stays: it is not the newest, a member acknowledged the epoch after it, or it was accepted before this CS started", epoch)})
		return
	case s.now().Sub(rc.at) < s.unprocGrace:
		s.refuse(w, ep, group, "", &RefusedError{Code: http.StatusTooEarly, Reason: ReasonTooEarly,
			Message: "members are still acknowledging the commit; report again later", RetryAfter: s.unprocGrace - s.now().Sub(rc.at)})
		return
	}
	if err := rv.RevertCommit(r.Context(), group, epoch); err != nil {
		s.log.Error("withdrawing a commit failed", "group", group, "epoch", epoch, "err", err)
		s.fail(w, ep, http.StatusInternalServerError, group, "the CS could not withdraw the commit; retry")
		return
	}
	s.recent.forget(group)
	if s.auth != nil {
		s.auth.commitAccepted(group) // pending joins wait for the next commit anew
	}
	s.metrics.response(ep, http.StatusOK)
	s.log.Warn("commit withdrawn: no member could process it", "group", group, "epoch", epoch)
	e := epoch
	writeJSON(w, http.StatusOK, okBody{Group: group, Epoch: &e})
}

// ReportUnprocessable tells the CS that the accepted commit of epoch cannot
// be processed (see the endpoint above). nil: withdrawn. Errors:
// *StatusError 409 (ReasonCommitProcessed: it stays), 425 (ReasonTooEarly,
// with RetryAfter), 404, and the authentication refusals.
func (c *Client) ReportUnprocessable(ctx context.Context, group string, epoch uint64) error {
	a, err := c.do(ctx, http.MethodPost, group, "commits/"+strconv.FormatUint(epoch, 10)+"/unprocessable", nil)
	if err != nil {
		return err
	}
	if a.code == http.StatusOK {
		return nil
	}
	return a.statusErr()
}
