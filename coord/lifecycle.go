package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/moqsframe/moqsframe/coord/store"
	"github.com/moqsframe/moqsframe/coord/wire"
)

// Group lifecycle: liveness of members and retirement of groups whose
// members are all gone (docs/coordination-service.md, "Liveness and
// retirement"; docs/security-groups.md for the member side).
//
//	POST /v1/groups/{group}/heartbeats  body EpochAck -> 200 | 400 | 403 | 404
//	GET  /v1/groups/{group}/liveness                  -> 200 LivenessReport | 404
//	POST /v1/groups/{group}/retire      body EpochAck -> 200 | 409 | 400 | 403 | 404
//
// The CS holds no MLS state: it records, per (identity, leaf), when it last
// heard a member (heartbeats and epoch acks), and whether that leaf posted
// a leave request. The identity is the caller's client certificate's name
// (with Config.Auth), so a member can only keep its own leaves alive. The
// leaf is the member's claim; members match records against their verified
// roster, so a record for a leaf that holds another name counts for
// nothing. Records are in memory: a restarted CS starts watching afresh.
//
// A group is retired (store.Retirer: its state, outbox and archive are
// removed, and the next join request creates it afresh at epoch 0, 201) in
// two cases:
//
//   - retire: a member that leaves and, by its verified roster, is the
//     last member not leaving asks for it with its epoch. The CS refuses
//     (409) if the group's epoch is another (a commit the member has not
//     seen) or if it heard another identity's leaf that did not post a
//     leave request within LivenessTimeout.
//   - silence: a join request arrives for a group of which the CS has heard
//     no member that did not leave for LivenessTimeout, counted from the
//     later of the last heartbeat, the group's creation and this CS
//     process's start. Only a join request triggers this: a member's poll
//     after a partition never retires its own group.

// DefaultLivenessTimeout is Config.LivenessTimeout's default.
const DefaultLivenessTimeout = 30 * time.Second

// maxLiveRecords bounds the liveness records of one group (the oldest go
// first): a group has at most the policy's members, each with one leaf.
const maxLiveRecords = 1024

// ErrRetireRefused is matched (errors.Is) by the *StatusError of a 409
// answer to Client.Retire: the group's epoch moved on, or other members
// are alive; leave with a leave request instead.
var ErrRetireRefused = errors.New("coord: the CS did not retire the group")

// LivenessReport is the answer of GET .../liveness.
type LivenessReport struct {
	Group string `json:"group"`
	Epoch uint64 `json:"epoch"`
	// TimeoutMS is the CS's LivenessTimeout (milliseconds).
	TimeoutMS int64 `json:"timeout_ms"`
	// Members lists the CS's records in identity, leaf order.
	Members []LiveMember `json:"members"`
}

// LiveMember is one liveness record.
type LiveMember struct {
	Identity string `json:"identity"` // authenticated name of the poster ("" for an open CS without one)
	Leaf     uint32 `json:"leaf"`     // the leaf the poster claimed
	Epoch    uint64 `json:"epoch"`    // newest epoch it reported
	// SilentMS is how long (milliseconds, by the CS's clock) the CS has not
	// heard this leaf, counted at most from when the group was last heard
	// at all: after a time in which the CS heard no member of the group (a
	// partition between the CS and everyone, or a CS restart), every member
	// gets a fresh LivenessTimeout to be heard again.
	SilentMS int64 `json:"silent_ms"`
	// Left: the leaf posted a leave request (its own Remove proposal).
	Left bool `json:"left,omitempty"`
}

// Silent is SilentMS as a duration.
func (m LiveMember) Silent() time.Duration { return time.Duration(m.SilentMS) * time.Millisecond }

type liveKey struct {
	id   string
	leaf uint32
}

type liveRec struct {
	seen  time.Time
	epoch uint64
	left  bool
}

type liveGroup struct {
	since   time.Time // the group was created, or this process started watching it
	heard   time.Time // the last heartbeat or ack of a leaf that did not leave
	revived time.Time // the first heartbeat after a silence of the whole group
	recs    map[liveKey]*liveRec
	// leftOpen: leaves that posted a leave request to an open CS, which
	// cannot tell who posted: every record at such a leaf counts as left.
	leftOpen map[uint32]bool
}

func (g *liveGroup) isLeft(k liveKey, r *liveRec) bool { return r.left || g.leftOpen[k.leaf] }

// liveness is the Server's in-memory liveness state.
type liveness struct {
	mu      sync.Mutex
	start   time.Time
	timeout time.Duration // <0: silence never retires a group
	groups  map[string]*liveGroup
}

func (l *liveness) group(name string) *liveGroup {
	g := l.groups[name]
	if g == nil {
		g = &liveGroup{since: l.start, recs: map[liveKey]*liveRec{}}
		l.groups[name] = g
	}
	return g
}

func (l *liveness) timeoutOrDefault() time.Duration {
	if l.timeout > 0 {
		return l.timeout
	}
	return DefaultLivenessTimeout
}

// heard records a heartbeat or ack of (id, leaf) at epoch.
func (l *liveness) heard(group, id string, leaf uint32, epoch uint64, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.group(group)
	if last := later(g.heard, g.since); now.Sub(last) >= l.timeoutOrDefault() {
		g.revived = now
	}
	k := liveKey{id, leaf}
	r := g.record(k)
	r.seen, r.epoch = now, max(r.epoch, epoch)
	if !g.isLeft(k, r) {
		g.heard = now
	}
}

// record returns k's record, creating it (and making room within
// maxLiveRecords by evicting the oldest) if there is none.
func (g *liveGroup) record(k liveKey) *liveRec {
	r := g.recs[k]
	if r == nil {
		if len(g.recs) >= maxLiveRecords {
			g.evictOldest()
		}
		r = &liveRec{}
		g.recs[k] = r
	}
	return r
}

func (g *liveGroup) evictOldest() {
	var oldest liveKey
	var at time.Time
	for k, r := range g.recs {
		if at.IsZero() || r.seen.Before(at) {
			oldest, at = k, r.seen
		}
	}
	delete(g.recs, oldest)
}

// merge takes in the records other replicas heard (store.LivenessSharer):
// a leaf is as recent as the latest replica heard it.
func (l *liveness) merge(group string, recs []store.Heard) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.group(group)
	for _, h := range recs {
		k := liveKey{h.Identity, h.Leaf}
		r := g.record(k)
		if h.At.After(r.seen) {
			r.seen = h.At
		}
		r.epoch, r.left = max(r.epoch, h.Epoch), r.left || h.Left
		if !g.isLeft(k, r) && r.seen.After(g.heard) {
			g.heard = r.seen
		}
	}
}

// left marks the leaf that posted a leave request. An open CS (id "")
// marks every record at that leaf: it cannot tell who posted.
func (l *liveness) left(group, id string, leaf uint32, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.group(group)
	if id == "" {
		if g.leftOpen == nil {
			g.leftOpen = map[uint32]bool{}
		}
		if len(g.leftOpen) < maxLiveRecords {
			g.leftOpen[leaf] = true
		}
		return
	}
	if r := g.recs[liveKey{id, leaf}]; r != nil {
		r.left = true
		return
	}
	if len(g.recs) >= maxLiveRecords {
		g.evictOldest()
	}
	g.recs[liveKey{id, leaf}] = &liveRec{seen: now, left: true}
}

// created starts a new record set for a group just created by id.
func (l *liveness) created(group, id string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.groups[group] = &liveGroup{since: now, heard: now, recs: map[liveKey]*liveRec{{id, 0}: {seen: now}}}
}

func (l *liveness) forget(group string) {
	l.mu.Lock()
	delete(l.groups, group)
	l.mu.Unlock()
}

// othersAlive lists the identities other than id with a leaf that did not
// leave and was heard within the timeout (a negative timeout: ever).
func (l *liveness) othersAlive(group, id string, now time.Time) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.groups[group]
	if g == nil {
		return nil
	}
	var out []string
	for k, r := range g.recs {
		if k.id == id || g.isLeft(k, r) {
			continue
		}
		if l.timeout < 0 || now.Sub(r.seen) < l.timeout {
			out = append(out, fmt.Sprintf("%s@%d", k.id, k.leaf))
		}
	}
	sort.Strings(out)
	return out
}

// silent reports whether no member that did not leave was heard for the
// timeout (counted from the group's creation or this process's start at
// the earliest).
func (l *liveness) silent(group string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timeout < 0 {
		return false
	}
	since := l.start
	if g := l.groups[group]; g != nil {
		since = later(g.since, g.heard)
	}
	return now.Sub(since) >= l.timeout
}

func (l *liveness) report(group string, now time.Time) []LiveMember {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.groups[group]
	if g == nil {
		return []LiveMember{}
	}
	out := make([]LiveMember, 0, len(g.recs))
	for k, r := range g.recs {
		from := later(r.seen, later(g.revived, l.start))
		out = append(out, LiveMember{Identity: k.id, Leaf: k.leaf, Epoch: r.epoch, Left: g.isLeft(k, r),
			SilentMS: max(now.Sub(from), 0).Milliseconds()})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Identity != out[j].Identity {
			return out[i].Identity < out[j].Identity
		}
		return out[i].Leaf < out[j].Leaf
	})
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// readMemberReport reads the EpochAck body of heartbeats and retire, checks
// it against the URL's group and the caller, and returns it with the
// identity to record: the caller's authenticated name (with Auth) or the
// posted one (open CS). On failure it has answered.
func (s *Server) readMemberReport(w http.ResponseWriter, r *http.Request, ep string) (group, id string, a *wire.EpochAck, ok bool) {
	group, body, ok := s.readBody(w, r, ep)
	if !ok {
		return "", "", nil, false
	}
	a, err := wire.UnmarshalEpochAck(body)
	if err != nil {
		s.fail(w, ep, http.StatusBadRequest, group, "body is not a valid EpochAck struct (see docs/coordination-service.md): "+err.Error())
		return "", "", nil, false
	}
	if string(a.GroupID) != group {
		s.fail(w, ep, http.StatusBadRequest, group, fmt.Sprintf("EpochAck.group_id %q does not match the URL group %q", a.GroupID, group))
		return "", "", nil, false
	}
	id = string(a.Identity)
	if s.auth != nil {
		id = callerIdentity(r)
		if len(a.Identity) > 0 && string(a.Identity) != id {
			s.refuse(w, ep, group, id, &RefusedError{Code: http.StatusForbidden, Reason: ReasonAckIdentityMismatch,
				Message: fmt.Sprintf("EpochAck.identity %q is not the client certificate's name %q; leave it empty", a.Identity, id)})
			return "", "", nil, false
		}
	}
	return group, id, a, true
}

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	const ep = "heartbeats"
	group, id, a, ok := s.readMemberReport(w, r, ep)
	if !ok {
		return
	}
	cur, ok := s.decidedEpoch(w, r, ep, group, a.Epoch)
	if !ok {
		return
	}
	s.heard(r.Context(), group, id, a.Leaf, a.Epoch)
	s.metrics.Heartbeats.Add(1)
	s.metrics.response(ep, http.StatusOK)
	writeJSON(w, http.StatusOK, okBody{Group: group, Epoch: &cur})
}

func (s *Server) handleLiveness(w http.ResponseWriter, r *http.Request) {
	const ep = "liveness"
	group := r.PathValue("group")
	if !wire.ValidGroupName(group) {
		s.fail(w, ep, http.StatusBadRequest, "", "invalid group name: use 1-255 characters from A-Z a-z 0-9 - . _ ~")
		return
	}
	cur, err := s.store.Epoch(r.Context(), group)
	if s.failRead(w, ep, group, err) {
		return
	}
	w.Header().Set(EpochHeader, strconv.FormatUint(cur, 10))
	s.metrics.response(ep, http.StatusOK)
	s.loadShared(r.Context(), group)
	writeJSON(w, http.StatusOK, LivenessReport{Group: group, Epoch: cur, TimeoutMS: s.live.timeoutOrDefault().Milliseconds(),
		Members: s.live.report(group, s.now())})
}

func (s *Server) handleRetire(w http.ResponseWriter, r *http.Request) {
	const ep = "retire"
	group, id, a, ok := s.readMemberReport(w, r, ep)
	if !ok {
		return
	}
	unlock := s.lockGroup(group)
	defer unlock()
	cur, err := s.store.Epoch(r.Context(), group)
	if s.failRead(w, ep, group, err) {
		return
	}
	w.Header().Set(EpochHeader, strconv.FormatUint(cur, 10))
	if a.Epoch != cur {
		s.fail(w, ep, http.StatusConflict, group, fmt.Sprintf("the group is at epoch %d, not %d: apply its commits and leave with a leave request, or retire again if still last", cur, a.Epoch))
		return
	}
	s.loadShared(r.Context(), group)
	if alive := s.live.othersAlive(group, id, s.now()); len(alive) > 0 {
		s.fail(w, ep, http.StatusConflict, group, fmt.Sprintf("other members were heard within %v and did not leave (%d: %v); leave with a leave request", s.live.timeoutOrDefault(), len(alive), alive))
		return
	}
	if err := s.retireLocked(r.Context(), group, "last_member"); err != nil {
		if s.failRead(w, ep, group, err) {
			return
		}
	}
	s.log.Info("group retired", "group", group, "reason", "last member left", "identity", id, "epoch", cur)
	s.metrics.response(ep, http.StatusOK)
	writeJSON(w, http.StatusOK, okBody{Group: group, Epoch: &cur})
}

// retireLocked removes the group from the store and forgets everything this
// process holds about it. The caller holds the group lock.
func (s *Server) retireLocked(ctx context.Context, group, reason string) error {
	rt, ok := s.store.(store.Retirer)
	if !ok {
		return errors.New("coord: the store cannot retire groups")
	}
	if err := rt.RetireGroup(ctx, group); err != nil {
		return err
	}
	s.live.forget(group)
	s.recent.forget(group)
	if s.auth != nil {
		s.auth.commitAccepted(group) // drops its pending joins
	}
	s.metrics.retired(reason)
	return nil
}

// retireIfSilentLocked retires a group whose members have all been silent
// for the timeout (the caller is about to handle a join request). The
// caller holds the group lock.
func (s *Server) retireIfSilentLocked(ctx context.Context, group string) {
	if _, ok := s.store.(store.Retirer); !ok {
		return
	}
	s.loadShared(ctx, group)
	if !s.live.silent(group, s.now()) {
		return
	}
	e, err := s.store.Epoch(ctx, group)
	if err != nil {
		return // unknown (the join creates it) or unreadable (the join will say)
	}
	if err := s.retireLocked(ctx, group, "silent"); err != nil {
		s.log.Error("retiring a silent group failed", "group", group, "err", err)
		return
	}
	s.log.Info("group retired", "group", group, "reason", "no member heard", "timeout", s.live.timeoutOrDefault(), "epoch", e)
}

// Heartbeat tells the CS that this member, at leaf in epoch, is alive
// (body: an EpochAck; see Ack for name). Errors: *StatusError (400 future
// epoch, 404 ErrUnknownGroup, 401/403/429).
func (c *Client) Heartbeat(ctx context.Context, group string, epoch uint64, leaf uint32, name string) error {
	return c.memberReport(ctx, group, "heartbeats", epoch, leaf, name)
}

// Retire asks the CS to retire the group because this member, at leaf in
// epoch, is the last one and leaves. nil: the group is gone (the next join
// creates it afresh). Errors: *StatusError with errors.Is ErrRetireRefused
// (409: the epoch moved on or other members are alive; leave with Leave),
// ErrUnknownGroup (404: retired already), 401/403/429.
func (c *Client) Retire(ctx context.Context, group string, epoch uint64, leaf uint32, name string) error {
	return c.memberReport(ctx, group, "retire", epoch, leaf, name)
}

func (c *Client) memberReport(ctx context.Context, group, suffix string, epoch uint64, leaf uint32, name string) error {
	enc, err := (&wire.EpochAck{GroupID: []byte(group), Epoch: epoch, Leaf: leaf, Identity: []byte(name)}).Marshal()
	if err != nil {
		return err
	}
	a, err := c.do(ctx, http.MethodPost, group, suffix, enc)
	if err != nil {
		return err
	}
	if a.code == http.StatusOK {
		return nil
	}
	if a.code == http.StatusConflict && suffix == "retire" {
		return fmt.Errorf("%w: %w", ErrRetireRefused, a.statusErr())
	}
	return a.statusErr()
}

// Liveness reads the CS's liveness records of group. Errors: *StatusError
// (404 ErrUnknownGroup, 401/403/429), or a malformed answer.
func (c *Client) Liveness(ctx context.Context, group string) (*LivenessReport, error) {
	data, err := c.get(ctx, group, "liveness")
	if errors.Is(err, ErrNotFound) {
		return nil, &StatusError{Code: http.StatusNotFound, Message: fmt.Sprintf("group %q does not exist", group)}
	}
	if err != nil {
		return nil, err
	}
	var rep LivenessReport
	if err := json.Unmarshal(data, &rep); err != nil || rep.Group != group {
		return nil, fmt.Errorf("coord: CS /liveness answer is not a LivenessReport for %q (%v)", group, err)
	}
	return &rep, nil
}

// decidedEpoch answers 400 (and false) when epoch is beyond the group's
// current epoch, which it returns: a member reports only epochs decided.
func (s *Server) decidedEpoch(w http.ResponseWriter, r *http.Request, ep, group string, epoch uint64) (uint64, bool) {
	cur, err := s.store.Epoch(r.Context(), group)
	if s.failRead(w, ep, group, err) {
		return 0, false
	}
	if epoch > cur {
		s.fail(w, ep, http.StatusBadRequest, group, fmt.Sprintf("epoch %d is not decided yet (the group is at epoch %d)", epoch, cur))
		return 0, false
	}
	return cur, true
}

// heard records a heartbeat or ack here and, with a shared store, for the
// other replicas.
func (s *Server) heard(ctx context.Context, group, id string, leaf uint32, epoch uint64) {
	now := s.now()
	s.live.heard(group, id, leaf, epoch, now)
	s.share(ctx, group, store.Heard{Identity: id, Leaf: leaf, Epoch: epoch, At: now})
}

// share publishes a liveness record to the other replicas (a store that
// is not shared has none). A failure only makes this replica's record
// local: logged, not an error for the member.
func (s *Server) share(ctx context.Context, group string, h store.Heard) {
	if sh, ok := s.store.(store.LivenessSharer); ok {
		if err := sh.ShareHeard(ctx, group, h); err != nil {
			s.log.Warn("sharing a liveness record failed", "group", group, "err", err)
		}
	}
}

// loadShared merges what the other replicas heard of group before this
// replica judges silence.
func (s *Server) loadShared(ctx context.Context, group string) {
	sh, ok := s.store.(store.LivenessSharer)
	if !ok {
		return
	}
	recs, err := sh.LoadHeard(ctx, group)
	if err != nil {
		s.log.Warn("reading shared liveness records failed", "group", group, "err", err)
		return
	}
	s.live.merge(group, recs)
}
