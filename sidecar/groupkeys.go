package sidecar

import (
	"fmt"
	"sync"

	"github.com/moqsframe/moqsframe/group"
	"github.com/moqsframe/moqsframe/pipeline"
)

// GroupKeys is a KeySource backed by a security group (MLS key schedule,
// RFC 9605 §5.2): every epoch the group agrees on is installed in the
// member's keyschedule.Schedule.
//
//   - Sealer(track) is a stream of the schedule with its own KID context
//     value: 0 for the first published track, 1 for the next, … (a track
//     published again gets its earlier value, so one track never has two
//     senders with the same key). The member's leaf index is part of the
//     KID, so contexts only need to differ within this member. Once a
//     commit removed the member, sealing fails with group.ErrRemoved.
//   - Opener(track) is the schedule itself: it opens any other member's
//     objects of any live epoch.
//
// A restarted sidecar joins as a new member (fresh KeyPackage, new leaf
// and keys), so its restarted counters never reuse a nonce.
type GroupKeys struct {
	m *group.Member

	mu       sync.Mutex
	contexts map[string]uint64
}

// NewGroupKeys returns a key source for a member that has joined its group.
func NewGroupKeys(m *group.Member) *GroupKeys {
	return &GroupKeys{m: m, contexts: map[string]uint64{}}
}

// Member returns the group member.
func (g *GroupKeys) Member() *group.Member { return g.m }

func trackID(t *pipeline.Track) string {
	return fmt.Sprintf("%q/%q", t.Namespace(), t.Name())
}

// Sealer returns an outbound stream with a context value of its own.
func (g *GroupKeys) Sealer(t *pipeline.Track) (pipeline.Sealer, error) {
	g.mu.Lock()
	id := trackID(t)
	c, ok := g.contexts[id]
	if !ok {
		c = uint64(len(g.contexts))
		g.contexts[id] = c
	}
	g.mu.Unlock()
	return g.m.Stream(c)
}

// Opener returns the member's key schedule.
func (g *GroupKeys) Opener(t *pipeline.Track) (pipeline.Opener, error) {
	return g.m.Schedule(), nil
}
