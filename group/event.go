package group

import (
	"fmt"
	"time"
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
	// EventRefused: a credential was refused (Err wraps mlsgroup.ErrRefused
	// and says which and why). A refused join request is skipped; a refused
	// commit or Welcome is not applied, and after a refused commit the
	// member stops sending (Sealer returns ErrRefused).
	EventRefused
	// EventStuck: the commit the CS accepted for Epoch cannot be processed.
	// The member keeps sending and receiving on its last good epoch; see
	// docs/security.md for the way out.
	EventStuck
	// EventRoster: the verified roster changed (Member.Roster).
	EventRoster
	// EventSilent: the members silent for longer than the liveness timeout
	// changed (Silent lists them; empty: nobody is silent any more). The
	// committer removes them (EventCommitted.RemovedSilent).
	EventSilent
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
	case EventRefused:
		return "refused"
	case EventStuck:
		return "stuck"
	case EventRoster:
		return "roster"
	case EventSilent:
		return "silent"
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
	// EventCommitted only: the silent members our commit removed.
	RemovedSilent int
	// EventSilent only: the identities silent for longer than the liveness
	// timeout, sorted.
	Silent []string
	Err    error
}
