package group

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/mlsgroup"
)

// Liveness: every member posts a heartbeat to the CS every
// HeartbeatInterval (the driver does, from its own goroutine, so that a
// member whose loop is slow under load is still heard) and reads the CS's
// liveness records at the same interval (here); a member of our
// verified roster whose (identity, leaf) the CS has not heard for
// LivenessTimeout is silent. Silent members do not count in the committer
// rank, and the committer proposes their removal. A leaving member that is
// the last one (everyone else is leaving or silent) asks the CS to retire
// the group instead of waiting for a commit nobody will make.
// docs/security-groups.md, "Liveness and the group's end".

// ErrGroupRetired: the CS retired the group while this member was in it
// (it was cut off from the CS for longer than the liveness timeout, and
// the others left or were silent). EventRemoved carries it. Rejoin with a
// new Member: the next join creates the group afresh.
var ErrGroupRetired = errors.New("group: the CS retired the group")

type liveState struct {
	nextRead time.Time // next liveness read (zero: not a member)
	reading  bool      // a liveness read is under way
	// silent: leaf -> name of the members silent by the last report
	// (always members of the newest roster, never us).
	silent map[uint32]string
	gen    int // changes with silent, for the rank cache
	// unseen: when a report first lacked a record for a roster member
	// (name/leaf/fingerprint): it has that long to be heard.
	unseen map[string]time.Time
	// proposed: names whose Remove proposal we stored in proposedEpoch
	// (kept by mlsgroup after a discarded commit: not proposed twice).
	proposed      map[string]bool
	proposedEpoch uint64
	removed       uint64 // members our accepted commits removed for silence

	retireInflight bool
	// retireRefused: the epoch whose retire the CS refused (+1; 0: none);
	// cleared at every poll, so a refused retire is tried again then.
	retireRefused uint64
}

func (c *core) liveOn() bool { return c.cfg.LivenessTimeout > 0 }

// liveDeadline is the next liveness read (zero if none is due).
func (c *core) liveDeadline() time.Time {
	if !c.liveOn() || !c.joined || c.removed {
		return time.Time{}
	}
	return c.live.nextRead
}

// liveTick reads the liveness records when due, and reposts a waiting
// join request.
func (c *core) liveTick() {
	if !c.join.repostAt.IsZero() && !c.now.Before(c.join.repostAt) {
		c.repostJoin()
	}
	if !c.liveOn() || !c.joined || c.removed || c.now.Before(c.live.nextRead) {
		return
	}
	// Only the members that may commit (and leaving ones, to see whether
	// they are last) read every interval; the others, a few times per
	// timeout: enough to take over when the lower ranks went silent,
	// without a GET from every member of a large group every interval.
	next := c.cfg.HeartbeatInterval
	if c.rank() > c.cfg.MaxBackups {
		next = max(next, c.cfg.LivenessTimeout/3)
	}
	c.live.nextRead = c.now.Add(next)
	if !c.live.reading {
		c.live.reading = true
		c.emit(actFetchLiveness{})
	}
}

// livenessAnswer computes the silent members from the CS's records: a
// roster member (not us) whose record is older than the timeout, or that
// has had no record for the timeout. A record counts only for the name and
// leaf of our verified roster: the CS stamps the poster's authenticated
// name, so nobody keeps another member alive, and a report cannot name a
// member we do not have.
func (c *core) livenessAnswer(in inLiveness) {
	c.live.reading = false
	if in.Err != nil || in.Report == nil {
		// No fresh view: nobody is removed on an old one.
		if errors.Is(in.Err, coord.ErrUnknownGroup) {
			c.groupUnknown()
		}
		c.setSilent(nil)
		return
	}
	roster, err := c.mls.Roster(c.ctx)
	if err != nil || !c.joined || c.removed {
		return
	}
	type key struct {
		name string
		leaf uint32
	}
	recs := make(map[key]coord.LiveMember, len(in.Report.Members))
	for _, r := range in.Report.Members {
		recs[key{r.Identity, r.Leaf}] = r
	}
	silent := map[uint32]string{}
	if c.live.unseen == nil {
		c.live.unseen = map[string]time.Time{}
	}
	seen := map[string]bool{}
	for _, e := range roster {
		if e.Name == c.cfg.Identity {
			continue
		}
		id := fmt.Sprintf("%s/%d/%s", e.Name, e.Leaf, e.Fingerprint)
		seen[id] = true
		r, ok := recs[key{e.Name, e.Leaf}]
		if ok {
			delete(c.live.unseen, id)
			if !r.Left && r.Silent() >= c.cfg.LivenessTimeout {
				silent[e.Leaf] = e.Name
			}
			continue
		}
		since, ok := c.live.unseen[id]
		if !ok {
			since = c.now
			c.live.unseen[id] = since
		}
		if c.now.Sub(since) >= c.cfg.LivenessTimeout {
			silent[e.Leaf] = e.Name
		}
	}
	maps.DeleteFunc(c.live.unseen, func(id string, _ time.Time) bool { return !seen[id] })
	c.setSilent(silent)
}

func (c *core) setSilent(s map[uint32]string) {
	if maps.Equal(s, c.live.silent) || len(s) == 0 && len(c.live.silent) == 0 {
		return
	}
	c.live.silent = s
	c.live.gen++
	names := slices.Sorted(maps.Values(s))
	if len(names) > 0 {
		c.log.Warn("members silent for longer than the liveness timeout", "members", names, "timeout", c.cfg.LivenessTimeout)
	}
	c.event(Event{Type: EventSilent, Members: c.memberCount(), Silent: names})
}

// pruneSilent keeps the silent members that are still at their leaf in the
// new roster.
func (c *core) pruneSilent(roster []mlsgroup.RosterEntry) {
	if len(c.live.silent) == 0 {
		return
	}
	at := make(map[uint32]string, len(roster))
	for _, e := range roster {
		at[e.Leaf] = e.Name
	}
	s := maps.Clone(c.live.silent)
	maps.DeleteFunc(s, func(leaf uint32, name string) bool { return at[leaf] != name })
	c.setSilent(s)
}

// silentToRemove lists the silent members a commit of ours should remove:
// not those leaving already (their own proposal removes them).
func (c *core) silentToRemove() map[uint32]string {
	if len(c.live.silent) == 0 {
		return nil
	}
	leaving := c.leaves[c.epoch]
	out := make(map[uint32]string, len(c.live.silent))
	for leaf, name := range c.live.silent {
		if _, out2 := leaving[leaf]; !out2 {
			out[leaf] = name
		}
	}
	return out
}

// proposeRemovals stores Remove proposals for the silent members (not
// those added[name]: a join of the same identity replaces their leaf) and
// returns how many the commit will carry.
func (c *core) proposeRemovals(roster []mlsgroup.RosterEntry, added map[string]bool) int {
	rm := c.silentToRemove()
	if len(rm) == 0 {
		return 0
	}
	if c.live.proposedEpoch != c.epoch || c.live.proposed == nil {
		c.live.proposed, c.live.proposedEpoch = map[string]bool{}, c.epoch
	}
	n := 0
	for _, e := range roster {
		name, ok := rm[e.Leaf]
		if !ok || name != e.Name || e.Name == c.cfg.Identity || added[name] {
			continue
		}
		if !c.live.proposed[name] {
			if err := c.mls.RemoveMember(c.ctx, name); err != nil {
				c.log.Warn("cannot propose the removal of a silent member", "identity", name, "err", err)
				continue
			}
			c.live.proposed[name] = true
		}
		n++
	}
	return n
}

// alone reports whether every other member is leaving or silent.
func (c *core) alone() bool {
	roster, err := c.mls.Roster(c.ctx)
	if err != nil {
		return false
	}
	leaving := c.leaves[c.epoch]
	for _, e := range roster {
		if e.Name == c.cfg.Identity && e.Leaf == c.leaf {
			continue
		}
		if _, out := leaving[e.Leaf]; out {
			continue
		}
		if c.live.silent[e.Leaf] == e.Name {
			continue
		}
		return false
	}
	return true
}

// maybeRetire asks the CS to retire the group if we leave and are the last.
func (c *core) maybeRetire() {
	if !c.leave.leaving || !c.joined || c.removed || c.staged != nil || c.live.retireInflight ||
		c.live.retireRefused == c.epoch+1 || !c.alone() {
		return
	}
	c.live.retireInflight = true
	c.emit(actPostRetire{Epoch: c.epoch, Leaf: c.leaf})
}

func (c *core) retirePosted(epoch uint64, err error) {
	c.live.retireInflight = false
	var se *coord.StatusError
	switch {
	case err == nil, errors.Is(err, coord.ErrUnknownGroup):
		// Retired, by us or by another last member leaving at the same time.
		c.log.Info("left as the last member: the CS retired the group", "epoch", epoch)
		c.setRemoved()
	case errors.Is(err, coord.ErrRetireRefused):
		// Someone is alive or the group moved on: our leave request stands.
		c.log.Info("the CS did not retire the group; waiting for our leave to be committed", "err", err)
		c.live.retireRefused = epoch + 1
	case errors.As(err, &se) && se.Code < 500:
		c.log.Warn("retire request refused", "err", err)
		c.live.retireRefused = epoch + 1
	default:
		c.log.Warn("retire request failed; will retry", "err", err)
		c.live.retireRefused = epoch + 1 // until the next poll
	}
}

// groupUnknown: the CS does not know the group. A joiner waiting for its
// Welcome posts its join again (the group was retired: it creates it
// afresh); a member learns that the group was retired without it.
func (c *core) groupUnknown() {
	switch {
	case !c.joined && c.join.phase == joinWaiting:
		c.repostJoin()
	case c.joined && !c.removed:
		c.log.Warn("the CS retired the group while we were a member")
		c.removed = true
		c.commitAt = time.Time{}
		c.event(Event{Type: EventRemoved, Err: ErrGroupRetired})
		if c.op != nil {
			c.finishOp(nil)
		}
	}
}
