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
