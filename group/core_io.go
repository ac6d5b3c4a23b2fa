package group

import (
	"time"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/mlsgroup"
)

// The core's inputs and outputs. The driver (member.go) turns MoQ objects,
// CS answers, API calls and timer expiries into inputs, hands them to
// core.step together with the current time, and carries out the actions
// it gets back, in order. Every HTTP or MoQ effect is an action, so the
// core can be tested by feeding inputs and comparing actions.

// input is something that happened.
type input interface{ isInput() }

// track is one of the group's tracks that carry archived items.
type track int

const (
	trackCommit  track = iota + 1 // MoQ group = epoch the commit was made in
	trackWelcome                  // MoQ group = epoch of the Welcome's commit
	trackRequest                  // MoQ group = request sequence number
)

func (t track) String() string {
	switch t {
	case trackCommit:
		return "commit"
	case trackWelcome:
		return "welcome"
	case trackRequest:
		return "request"
	}
	return "track?"
}

// source says where a commit or Welcome came from: the distinction matters
// for what to do with one that cannot be processed (a MoQ copy can be
// replaced by the CS's archived copy).
type source int

const (
	fromMoQ source = iota + 1
	fromArchive
)

// statePurpose says why the CS's state was read; the answer carries it back.
type statePurpose int

const (
	stateJoin   statePurpose = iota + 1 // bounds before our join request
	statePoll                           // periodic poll: fetch only what was decided at the previous poll
	stateResync                         // start / re-subscribed: fetch everything up to the CS's state
	stateRepair                         // a commit failed: fetch the requests it may refer to
)

// postKind names the POSTs whose answers the core waits for.
type postKind int

const (
	postJoin    postKind = iota + 1
	postCommit           // the staged commit (without Welcome)
	postWelcome          // the identical CommitRequest plus the Welcome ("late Welcome")
	postLeave
	postUnprocessable // a report that the accepted commit of Epoch cannot be processed
	postRetire        // we are the last member and leave: retire the group
)

type (
	// inObject: an object arrived on a track (MoQ group ID = num).
	inObject struct {
		Track track
		Num   uint64
		Data  []byte
	}
	// inResubscribed: a track was subscribed again; anything published
	// meanwhile is only in the archive.
	inResubscribed struct{}
	// inTick: time passed (the armed timer fired).
	inTick struct{}
	// inState answers actFetchState (Err: transport error, 404 =
	// coord.ErrUnknownGroup, ...).
	inState struct {
		Purpose        statePurpose
		Epoch, NextSeq uint64
		Err            error
	}
	// inFetched answers actFetch. Skipped: the driver did not fetch it,
	// because the item arrived on MoQ meanwhile (core.unwanted).
	inFetched struct {
		Track   track
		Num     uint64
		Data    []byte
		Err     error
		Skipped bool
	}
	// inPosted answers a POST: actPostJoin (Created: 201), actPostCommit,
	// actPostLeave. Epoch identifies the commit or leave proposal posted.
	// Err may be *coord.EpochConflictError (409), *coord.StatusError, or a
	// transport error.
	inPosted struct {
		Post    postKind
		Epoch   uint64
		Created bool
		Err     error
	}
	// inJoin starts the join (Member.Join).
	inJoin struct{}
	// inAbortJoin: Join's context ended before the join request was
	// accepted: stop retrying it.
	inAbortJoin struct{}
	// inCommit: Member.Commit; answered by actCommitDone with the same token.
	inCommit struct{ Token uint64 }
	// inLeave: Member.Leave; answered by actLeaveDone.
	inLeave struct{ Token uint64 }
	// inLiveness answers actFetchLiveness.
	inLiveness struct {
		Report *coord.LivenessReport
		Err    error
	}
)

func (inObject) isInput()       {}
func (inResubscribed) isInput() {}
func (inTick) isInput()         {}
func (inState) isInput()        {}
func (inFetched) isInput()      {}
func (inPosted) isInput()       {}
func (inJoin) isInput()         {}
func (inAbortJoin) isInput()    {}
func (inCommit) isInput()       {}
func (inLeave) isInput()        {}
func (inLiveness) isInput()     {}

// action is something the driver must do.
type action interface{ isAction() }

type (
	// actFetchState: GET /state; answer with inState{Purpose}.
	actFetchState struct{ Purpose statePurpose }
	// actFetch: GET an archived commit / Welcome / request; answer with inFetched.
	actFetch struct {
		Track track
		Num   uint64
	}
	// actPostJoin: POST a join request; answer with inPosted{postJoin}.
	actPostJoin struct{ KeyPackage []byte }
	// actPostCommit: POST a CommitRequest; answer with inPosted{postCommit}
	// (Welcome nil) or inPosted{postWelcome}.
	actPostCommit struct {
		Epoch           uint64
		Commit, Welcome []byte
	}
	// actReportUnprocessable: tell the CS that the commit it accepted for
	// Epoch cannot be processed; answer with inPosted{postUnprocessable}.
	actReportUnprocessable struct{ Epoch uint64 }
	// actPostLeave: POST a leave request; answer with inPosted{postLeave, Epoch}.
	actPostLeave struct {
		Epoch    uint64
		Proposal []byte
	}
	// actPostAck: POST an EpochAck (no answer needed: a lost ack costs
	// senders only their roll-over timeout).
	actPostAck struct {
		Epoch uint64
		Leaf  uint32
	}
	// actFetchLiveness: GET the CS's liveness records; answer with
	// inLiveness.
	actFetchLiveness struct{}
	// actPostRetire: ask the CS to retire the group (we are its last member
	// and leave); answer with inPosted{postRetire, Epoch}.
	actPostRetire struct {
		Epoch uint64
		Leaf  uint32
	}
	// actInstall: install an epoch into the SFrame key schedule.
	// Immediate: the epoch removed someone, seal with it at once.
	actInstall struct {
		Key       mlsgroup.KeyState
		Immediate bool
		Roster    []mlsgroup.RosterEntry // the epoch's verified members
	}
	// actSending: stop (a refused commit) or resume sending media.
	actSending struct{ On bool }
	// actEmit: deliver an event.
	actEmit struct{ Event Event }
	// actArmTimer: deliver inTick at At (zero: no timer needed).
	actArmTimer struct{ At time.Time }
	// actTickSchedule: let the key schedule expire old epochs (every poll).
	actTickSchedule struct{}
	// actJoinDone: the join failed for good (Err); success is EventJoined.
	actJoinDone struct{ Err error }
	// actCommitDone answers inCommit.
	actCommitDone struct {
		Token  uint64
		Result CommitResult
		Err    error
	}
	// actLeaveDone answers inLeave (the leave request is under way; removal
	// is EventRemoved).
	actLeaveDone struct {
		Token uint64
		Err   error
	}
)

func (actFetchState) isAction()          {}
func (actFetch) isAction()               {}
func (actPostJoin) isAction()            {}
func (actPostCommit) isAction()          {}
func (actPostLeave) isAction()           {}
func (actPostAck) isAction()             {}
func (actFetchLiveness) isAction()       {}
func (actPostRetire) isAction()          {}
func (actInstall) isAction()             {}
func (actSending) isAction()             {}
func (actReportUnprocessable) isAction() {}
func (actEmit) isAction()                {}
func (actArmTimer) isAction()            {}
func (actTickSchedule) isAction()        {}
func (actJoinDone) isAction()            {}
func (actCommitDone) isAction()          {}
func (actLeaveDone) isAction()           {}
