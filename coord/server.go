// Package coord implements the HTTPS coordination service (CS) of
// draft-jennings-moq-e2ee-mls: the HTTP Server (with its authentication,
// metrics and the Forwarder seam to the MoQ tracks) and the Client that
// group members use. The byte formats are in package coord/wire, the
// durable state in package coord/store. See docs/coordination-service.md.
package coord

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/moqsframe/moqsframe/coord/store"
	"github.com/moqsframe/moqsframe/coord/wire"
)

// EpochHeader carries the group's current epoch on commit and epoch
// responses, including 409 Conflict.
const EpochHeader = "MoQ-CS-Epoch"

// DefaultMaxBodyBytes bounds request bodies (413 beyond it).
const DefaultMaxBodyBytes = 1 << 20

// Config configures a Server.
type Config struct {
	Store     store.Store // required
	Forwarder Forwarder   // required
	Logger    *slog.Logger
	Metrics   *Metrics
	// MaxBodyBytes bounds POST bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// ForwardTimeout bounds one Forwarder call; 0 means 5s.
	ForwardTimeout time.Duration
	// Auth authenticates and authorizes every request (401, 403, 429; see
	// Auth). nil: the CS is open to anyone who reaches it (development).
	Auth *Auth
	// UnprocessableGrace is how long after accepting a commit the CS waits
	// for an acknowledgement of the next epoch before it lets members
	// withdraw the commit as unprocessable (unprocessable.go); 0:
	// DefaultUnprocessableGrace.
	UnprocessableGrace time.Duration
	// LivenessTimeout: a member leaf not heard (heartbeats, acks) for this
	// long no longer blocks the group's retirement by its last member, and
	// a group of which no member was heard for this long is retired at the
	// next join request (lifecycle.go). It is also reported to members on
	// GET .../liveness. 0: DefaultLivenessTimeout; negative: silence never
	// retires a group, and any leaf ever heard blocks a retire request.
	LivenessTimeout time.Duration
	// Now is the server's clock (grace periods, liveness); nil: time.Now.
	Now func() time.Time
	// Leader, if set, elects the one replica among several sharing the
	// Store that forwards (store.EtcdLeader); the others only decide and
	// answer 202 (forwarding pending), and RunForwarding must run. nil:
	// this process is the only one and always forwards.
	Leader Leader
}

// Leader elects the replica that forwards the groups' outboxes
// (store.EtcdLeader).
type Leader interface {
	// Leading returns a context that ends when this replica stops being
	// the forwarder, or nil if it is not the forwarder.
	Leading() context.Context
	// Next blocks until there is forwarding to do.
	Next(ctx context.Context) (store.ForwardWork, error)
	// QueueAck hands an epoch acknowledgement received by a replica that
	// is not the forwarder to the one that is.
	QueueAck(ctx context.Context, group string, epoch uint64, leaf uint32, ack []byte) error
}

// Server is the coordination service HTTP handler:
//
//	POST /v1/groups/{group}/requests  body Request        -> 201 | 200 | 202 | 400 | 404 | 413
//	POST /v1/groups/{group}/commits   body CommitRequest  -> 200 | 202 | 409 | 400 | 404 | 413
//	GET  /v1/groups/{group}/epoch                         -> 200 | 404
//	POST /v1/groups/{group}/acks      body EpochAck       -> 200 | 400 | 404 | 503 (if the Forwarder is an AckForwarder)
//	POST /v1/groups/{group}/commits/{epoch}/unprocessable -> 200 | 409 | 425 | 404 (unprocessable.go)
//
// With Config.Auth every endpoint (and the archive's) may also answer 401,
// 403 or 429 with a JSON body {"error": reason, "message", "group",
// "identity"}; see Auth and the Reason* constants.
//
// Ordering per group: the decision (Store) is durable first, then queued
// items are forwarded in order, then the response is written. A group's
// decision+forwarding runs under a per-group lock so forwarding never
// reorders or duplicates within one process.
type Server struct {
	store   store.Store
	fwd     Forwarder
	log     *slog.Logger
	metrics *Metrics
	maxBody int64
	fwdTO   time.Duration
	mux     *http.ServeMux
	locks   [64]sync.Mutex
	auth    *authState // nil: open

	now         func() time.Time
	unprocGrace time.Duration
	recent      recentCommits
	live        liveness
	leader      Leader
}

// NewServer checks cfg and returns a Server.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Forwarder == nil {
		return nil, errors.New("coord: NewServer needs a Store and a Forwarder")
	}
	s := &Server{
		store:   cfg.Store,
		fwd:     cfg.Forwarder,
		log:     cfg.Logger,
		metrics: cfg.Metrics,
		maxBody: cfg.MaxBodyBytes,
		fwdTO:   cfg.ForwardTimeout,
		now:     cfg.Now,

		unprocGrace: cfg.UnprocessableGrace,
		leader:      cfg.Leader,
		mux:         http.NewServeMux(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.metrics == nil {
		s.metrics = NewMetrics(nil)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.unprocGrace <= 0 {
		s.unprocGrace = DefaultUnprocessableGrace
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	s.live = liveness{start: s.now(), timeout: cfg.LivenessTimeout, groups: map[string]*liveGroup{}}
	if s.live.timeout == 0 {
		s.live.timeout = DefaultLivenessTimeout
	}
	if s.fwdTO <= 0 {
		s.fwdTO = 5 * time.Second
	}
	if cfg.Auth != nil {
		var err error
		if s.auth, err = newAuthState(*cfg.Auth); err != nil {
			return nil, err
		}
	}
	s.mux.HandleFunc("POST /v1/groups/{group}/requests", s.guard("requests", s.handleRequest))
	s.mux.HandleFunc("POST /v1/groups/{group}/commits", s.guard("commits", s.handleCommit))
	s.mux.HandleFunc("GET /v1/groups/{group}/epoch", s.guard("epoch", s.handleEpoch))
	if _, ok := s.fwd.(AckForwarder); ok {
		s.mux.HandleFunc("POST /v1/groups/{group}/acks", s.guard("acks", s.handleAck))
	}
	s.mux.HandleFunc("POST /v1/groups/{group}/commits/{n}/unprocessable", s.guard("unprocessable", s.handleUnprocessable))
	s.mux.HandleFunc("POST /v1/groups/{group}/heartbeats", s.guard("heartbeats", s.handleHeartbeat))
	s.mux.HandleFunc("GET /v1/groups/{group}/liveness", s.guard("liveness", s.handleLiveness))
	if _, ok := s.store.(store.Retirer); ok {
		s.mux.HandleFunc("POST /v1/groups/{group}/retire", s.guard("retire", s.handleRetire))
	}
	s.registerArchive()
	return s, nil
}

// Metrics returns the server's counters.
func (s *Server) Metrics() *Metrics { return s.metrics }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) lockGroup(group string) func() {
	h := fnv.New32a()
	h.Write([]byte(group))
	m := &s.locks[h.Sum32()%uint32(len(s.locks))]
	m.Lock()
	return m.Unlock
}

type errorBody struct {
	Error string  `json:"error"`
	Group string  `json:"group,omitempty"`
	Epoch *uint64 `json:"epoch,omitempty"`
}

type okBody struct {
	Group   string  `json:"group"`
	Created bool    `json:"created,omitempty"`
	Seq     *uint64 `json:"seq,omitempty"`
	Epoch   *uint64 `json:"epoch,omitempty"`
	Pending bool    `json:"forwarding_pending,omitempty"`
	NextSeq *uint64 `json:"next_seq,omitempty"` // /state only (archive.go)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// failRead answers a failed read of a group's state (404 for an unknown
// group, 500 otherwise) and reports whether it did.
func (s *Server) failRead(w http.ResponseWriter, endpoint, group string, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrUnknownGroup):
		s.fail(w, endpoint, http.StatusNotFound, group, fmt.Sprintf("group %q does not exist", group))
	default:
		s.log.Error("store read failed", "endpoint", endpoint, "group", group, "err", err)
		s.fail(w, endpoint, http.StatusInternalServerError, group, "the CS could not read the group state; retry later")
	}
	return true
}

func (s *Server) fail(w http.ResponseWriter, endpoint string, code int, group, msg string) {
	s.metrics.response(endpoint, code)
	writeJSON(w, code, errorBody{Error: msg, Group: group})
}

// readBody reads the body with the size limit and returns the group name.
// On failure it has written the response and returns ok=false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, endpoint string) (group string, body []byte, ok bool) {
	group = r.PathValue("group")
	if !wire.ValidGroupName(group) {
		s.fail(w, endpoint, http.StatusBadRequest, "", "invalid group name: use 1-255 characters from A-Z a-z 0-9 - . _ ~")
		return "", nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.fail(w, endpoint, http.StatusRequestEntityTooLarge, group,
				fmt.Sprintf("body exceeds %d bytes; this CS does not accept larger messages", mbe.Limit))
			return "", nil, false
		}
		s.fail(w, endpoint, http.StatusBadRequest, group, "could not read the request body: "+err.Error())
		return "", nil, false
	}
	return group, body, true
}

func (s *Server) handleRequest(w http.ResponseWriter, r *http.Request) {
	const ep = "requests"
	group, body, ok := s.readBody(w, r, ep)
	if !ok {
		return
	}
	req, err := wire.UnmarshalRequest(body)
	if err != nil {
		s.fail(w, ep, http.StatusBadRequest, group, "body is not a valid Request struct (see docs/coordination-service.md): "+err.Error())
		return
	}
	if string(req.GroupID) != group {
		s.fail(w, ep, http.StatusBadRequest, group, fmt.Sprintf("Request.group_id %q does not match the URL group %q", req.GroupID, group))
		return
	}
	if err := req.Validate(); err != nil {
		s.fail(w, ep, http.StatusBadRequest, group, "invalid "+req.Type.String()+" request: "+err.Error())
		return
	}
	id := callerIdentity(r)
	limitJoin := s.auth != nil && req.Type == wire.RequestJoin
	if limitJoin {
		refused, err := s.auth.checkKeyPackage(id, req.Body)
		if err != nil {
			s.fail(w, ep, http.StatusBadRequest, group, "the join's KeyPackage does not parse: "+err.Error())
			return
		}
		if refused != nil {
			s.refuse(w, ep, group, id, refused)
			return
		}
	}

	unlock := s.lockGroup(group)
	defer unlock()
	if req.Type == wire.RequestJoin {
		// A group whose members are all gone is retired first, so that
		// this join creates it afresh (201) instead of waiting for a
		// Welcome nobody will send.
		s.retireIfSilentLocked(r.Context(), group)
	}
	var digest [32]byte
	if limitJoin {
		digest = sha256.Sum256(body)
		replay, refused := s.auth.joinSlot(group, id, digest)
		if refused != nil {
			s.refuse(w, ep, group, id, refused)
			return
		}
		if replay != nil {
			// The identical join again (a lost answer): answer it as before
			// rather than putting it on the RequestTrack twice.
			pending := s.drainLocked(r.Context(), group, replay.outboxID)
			code := http.StatusOK
			if pending {
				code = http.StatusAccepted
			}
			s.metrics.response(ep, code)
			seq := replay.seq
			writeJSON(w, code, okBody{Group: group, Seq: &seq, Pending: pending})
			return
		}
	}
	res, err := s.store.SubmitRequest(r.Context(), group, body, req.Type == wire.RequestJoin)
	switch {
	case errors.Is(err, store.ErrUnknownGroup):
		s.fail(w, ep, http.StatusNotFound, group, fmt.Sprintf("group %q does not exist; only a join request can create a group", group))
		return
	case errors.Is(err, store.ErrTooLarge):
		s.fail(w, ep, http.StatusRequestEntityTooLarge, group, err.Error())
		return
	case err != nil:
		s.log.Error("store request failed", "group", group, "err", err)
		s.fail(w, ep, http.StatusInternalServerError, group, "the CS could not record the request; retry later")
		return
	}
	if res.Created {
		s.live.created(group, id, s.now())
		s.metrics.GroupsCreated.Add(1)
		s.metrics.response(ep, http.StatusCreated)
		s.log.Info("group created", "group", group)
		zero := uint64(0)
		writeJSON(w, http.StatusCreated, okBody{Group: group, Created: true, Epoch: &zero})
		return
	}
	s.metrics.RequestsQueued.Add(1)
	if req.Type == wire.RequestLeave {
		if _, leaf, err := wire.ProposalSender(req.Body); err == nil {
			s.live.left(group, id, leaf, s.now())
			if id != "" {
				s.share(r.Context(), group, store.Heard{Identity: id, Leaf: leaf, At: s.now(), Left: true})
			}
		}
	}
	if limitJoin {
		s.auth.addPending(group, id, pendingJoin{digest: digest, seq: res.Seq, outboxID: res.OutboxID})
	}
	pending := s.drainLocked(r.Context(), group, res.OutboxID)
	code := http.StatusOK
	if pending {
		code = http.StatusAccepted
	}
	s.metrics.response(ep, code)
	s.log.Info("request queued", "group", group, "type", req.Type.String(), "seq", res.Seq, "forwarded", !pending)
	writeJSON(w, code, okBody{Group: group, Seq: &res.Seq, Pending: pending})
}

func (s *Server) handleCommit(w http.ResponseWriter, r *http.Request) {
	const ep = "commits"
	group, body, ok := s.readBody(w, r, ep)
	if !ok {
		return
	}
	cr, err := wire.UnmarshalCommitRequest(body)
	if err != nil {
		s.fail(w, ep, http.StatusBadRequest, group, "body is not a valid CommitRequest struct (see docs/coordination-service.md): "+err.Error())
		return
	}
	if string(cr.GroupID) != group {
		s.fail(w, ep, http.StatusBadRequest, group, fmt.Sprintf("CommitRequest.group_id %q does not match the URL group %q", cr.GroupID, group))
		return
	}
	if err := cr.Validate(); err != nil {
		s.fail(w, ep, http.StatusBadRequest, group, "invalid commit request: "+err.Error())
		return
	}

	unlock := s.lockGroup(group)
	defer unlock()
	res, err := s.store.SubmitCommit(r.Context(), group, cr.Epoch, cr.Commit, cr.Welcome)
	switch {
	case errors.Is(err, store.ErrUnknownGroup):
		s.fail(w, ep, http.StatusNotFound, group, fmt.Sprintf("group %q does not exist; send a join request first", group))
		return
	case errors.Is(err, store.ErrTooLarge):
		s.fail(w, ep, http.StatusRequestEntityTooLarge, group, err.Error())
		return
	case err != nil:
		s.log.Error("store commit failed", "group", group, "err", err)
		s.fail(w, ep, http.StatusInternalServerError, group, "the CS could not record the commit; retry the identical request")
		return
	}
	w.Header().Set(EpochHeader, strconv.FormatUint(res.Epoch, 10))
	if res.Outcome == store.CommitConflict {
		s.metrics.CommitConflicts.Add(1)
		s.metrics.response(ep, http.StatusConflict)
		s.log.Info("commit conflict", "group", group, "commit_epoch", cr.Epoch, "epoch", res.Epoch)
		e := res.Epoch
		writeJSON(w, http.StatusConflict, errorBody{
			Error: fmt.Sprintf("commit is for epoch %d but the group is at epoch %d; discard it, apply the commits on the CommitTrack up to epoch %d and retry", cr.Epoch, res.Epoch, res.Epoch),
			Group: group, Epoch: &e,
		})
		return
	}
	if res.Outcome == store.CommitAccepted {
		s.metrics.CommitsAccepted.Add(1)
		if s.auth != nil {
			s.auth.commitAccepted(group)
		}
		s.recent.accepted(group, cr.Epoch, s.now())
	}
	pending := s.drainLocked(r.Context(), group, res.OutboxID)
	if res.Outcome == store.CommitDuplicate && !pending {
		pending = s.commitPendingLocked(r.Context(), group, cr.Epoch)
	}
	code := http.StatusOK
	if pending {
		code = http.StatusAccepted
	}
	s.metrics.response(ep, code)
	s.log.Info("commit accepted", "group", group, "commit_epoch", cr.Epoch, "epoch", res.Epoch,
		"welcome", cr.Welcome != nil, "duplicate", res.Outcome == store.CommitDuplicate, "forwarded", !pending)
	e := res.Epoch
	writeJSON(w, code, okBody{Group: group, Epoch: &e, Pending: pending})
}

func (s *Server) handleEpoch(w http.ResponseWriter, r *http.Request) {
	const ep = "epoch"
	group := r.PathValue("group")
	if !wire.ValidGroupName(group) {
		s.fail(w, ep, http.StatusBadRequest, "", "invalid group name: use 1-255 characters from A-Z a-z 0-9 - . _ ~")
		return
	}
	e, err := s.store.Epoch(r.Context(), group)
	if s.failRead(w, ep, group, err) {
		return
	}
	w.Header().Set(EpochHeader, strconv.FormatUint(e, 10))
	s.metrics.response(ep, http.StatusOK)
	writeJSON(w, http.StatusOK, okBody{Group: group, Epoch: &e})
}

// drainLocked forwards the group's outbox in order and reports whether the
// entry `want` is still queued. The caller holds the group lock. Forwarding
// is detached from the HTTP request's cancellation: once a decision is
// durable we try to publish it even if the client went away. With a
// Leader, only the elected replica forwards, and only while its lease
// lasts: it stops before the next entry once deposed.
func (s *Server) drainLocked(ctx context.Context, group string, want uint64) (pending bool) {
	ctx = context.WithoutCancel(ctx)
	if s.leader != nil {
		lctx := s.leader.Leading()
		if lctx == nil {
			return want != 0 // queued for the elected replica
		}
		ctx = lctx
	}
	entries, err := s.store.Outbox(ctx, group)
	if err != nil {
		s.log.Error("reading outbox failed", "group", group, "err", err)
		return true
	}
	for _, e := range entries {
		if ctx.Err() != nil {
			return want != 0 && want >= e.ID
		}
		if err := s.forward(ctx, group, e); err != nil {
			s.metrics.ForwardErrors.Add(1)
			s.log.Warn("forwarding failed; will retry", "group", group, "kind", e.Kind, "num", e.Num, "err", err)
			// Entries are forwarded and acked strictly in ID order, so
			// everything from e on is still queued.
			return want != 0 && want >= e.ID
		}
		if err := s.store.Ack(ctx, group, e.ID); err != nil {
			// Forwarded but not acked: it will be forwarded again (idempotent).
			s.log.Error("acking outbox entry failed", "group", group, "err", err)
			return want != 0 && want >= e.ID
		}
	}
	return false
}

func (s *Server) commitPendingLocked(ctx context.Context, group string, epoch uint64) bool {
	entries, err := s.store.Outbox(ctx, group)
	if err != nil {
		return true
	}
	for _, e := range entries {
		if (e.Kind == store.OutboxCommit || e.Kind == store.OutboxWelcome) && e.Num == epoch {
			return true
		}
	}
	return false
}

// forward publishes one entry: for a commit, the Commit first, then the
// Welcome (a joiner that sees the Welcome can rely on the Commit being on
// the CommitTrack).
func (s *Server) forward(ctx context.Context, group string, e store.OutboxEntry) error {
	ctx, cancel := context.WithTimeout(ctx, s.fwdTO)
	defer cancel()
	switch e.Kind {
	case store.OutboxRequest:
		if err := s.fwd.ForwardRequest(ctx, group, e.Num, e.Payload); err != nil {
			return err
		}
		s.metrics.Forwarded.Add(1)
	case store.OutboxCommit:
		if err := s.fwd.ForwardCommit(ctx, group, e.Num, e.Payload); err != nil {
			return err
		}
		s.metrics.Forwarded.Add(1)
		if e.Welcome != nil {
			if err := s.fwd.ForwardWelcome(ctx, group, e.Num, e.Welcome); err != nil {
				return err
			}
			s.metrics.Forwarded.Add(1)
		}
	case store.OutboxWelcome:
		if err := s.fwd.ForwardWelcome(ctx, group, e.Num, e.Welcome); err != nil {
			return err
		}
		s.metrics.Forwarded.Add(1)
	default:
		return fmt.Errorf("coord: unknown outbox entry kind %d", e.Kind)
	}
	return nil
}

// RunForwarding forwards, while Config.Leader elects this replica, what any
// replica queued, until ctx ends (returning its error). Without a Leader
// it returns nil at once.
func (s *Server) RunForwarding(ctx context.Context) error {
	if s.leader == nil {
		return nil
	}
	for {
		w, err := s.leader.Next(ctx)
		if err != nil {
			return err
		}
		if w.Gained {
			if left, err := s.Redeliver(ctx); err != nil || left > 0 {
				s.log.Warn("redelivery after becoming the forwarder incomplete", "groups_pending", left, "err", err)
			}
		}
		for _, g := range w.Groups {
			unlock := s.lockGroup(g)
			s.drainLocked(ctx, g, 0)
			unlock()
		}
		if af, ok := s.fwd.(AckForwarder); ok {
			for _, a := range w.Acks {
				actx, cancel := context.WithTimeout(ctx, s.fwdTO)
				if err := af.ForwardAck(actx, a.Group, a.Epoch, a.Leaf, a.Ack); err != nil {
					s.metrics.ForwardErrors.Add(1)
					s.log.Warn("forwarding a queued ack failed; dropped", "group", a.Group, "epoch", a.Epoch, "err", err)
				}
				cancel()
			}
		}
	}
}

// Redeliver forwards every queued entry of every group (call it at startup
// and periodically); with a Leader, only on the elected replica. It returns the number of groups whose outbox is still
// non-empty afterwards.
func (s *Server) Redeliver(ctx context.Context) (stillPending int, err error) {
	if s.leader != nil && s.leader.Leading() == nil {
		return 0, nil // the elected replica forwards
	}
	groups, err := s.store.PendingGroups(ctx)
	if err != nil {
		return 0, err
	}
	for _, g := range groups {
		unlock := s.lockGroup(g)
		s.drainLocked(ctx, g, 0)
		left, err := s.store.Outbox(ctx, g)
		unlock()
		if err != nil {
			return stillPending, err
		}
		if len(left) > 0 {
			stillPending++
		}
	}
	return stillPending, nil
}
