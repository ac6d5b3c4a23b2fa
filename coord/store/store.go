// Package store holds the durable state of the coordination service (CS):
// the Store interface the server decides with (one atomic step per
// decision: the group's epoch and request sequence, and an outbox of
// accepted items to forward), its implementations MemStore (tests) and
// BoltStore (a bbolt file, the default), and the optional interfaces the
// server's other endpoints use: Archive (catch-up reads of decided items)
// and Reverter (withdrawing the newest commit). See
// docs/coordination-service.md.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
)

// ErrUnknownGroup: the group has not been created (no join request reached
// the CS for it yet).
var ErrUnknownGroup = errors.New("coord: unknown group")

// ErrStoreClosed is returned by a Store after Close.
var ErrStoreClosed = errors.New("coord: store is closed")

// RequestResult is the outcome of Store.SubmitRequest.
type RequestResult struct {
	// Created: this request created the group at epoch 0 (HTTP 201). Nothing
	// was queued for forwarding.
	Created bool
	// Seq is the RequestTrack sequence number assigned to the request when
	// !Created. Sequence numbers start at 0 and increase by one per group.
	Seq uint64
	// OutboxID identifies the queued forwarding entry when !Created.
	OutboxID uint64
}

// CommitOutcome says how Store.SubmitCommit decided.
type CommitOutcome int

const (
	// CommitAccepted: the epoch matched; it was incremented and the commit
	// (and welcome) queued for forwarding.
	CommitAccepted CommitOutcome = iota + 1
	// CommitDuplicate: the identical commit was already accepted for this
	// epoch earlier (a retry after a lost response, or a late Welcome). If a
	// Welcome is given and none was recorded for that epoch, it is queued
	// (OutboxID set); otherwise nothing changed.
	CommitDuplicate
	// CommitConflict: the epoch did not match. Nothing changed.
	CommitConflict
)

// CommitResult is the outcome of Store.SubmitCommit.
type CommitResult struct {
	Outcome CommitOutcome
	// Epoch is the group's epoch after the call (the new epoch when accepted,
	// the current one otherwise).
	Epoch uint64
	// OutboxID identifies the queued forwarding entry when accepted.
	OutboxID uint64
}

// OutboxKind says what an outbox entry forwards.
type OutboxKind uint8

const (
	OutboxRequest OutboxKind = 1 // forward Payload on the RequestTrack, seq = Num
	OutboxCommit  OutboxKind = 2 // forward Payload on the CommitTrack (group = Num), Welcome on the WelcomeTrack
	OutboxWelcome OutboxKind = 3 // forward Welcome on the WelcomeTrack (group = Num), for a late Welcome
)

// OutboxEntry is a decision that has been made durable but whose forwarding
// has not been acknowledged yet.
type OutboxEntry struct {
	ID      uint64 // increasing per group; forward in ID order
	Kind    OutboxKind
	Num     uint64 // request sequence number or commit epoch
	Payload []byte
	Welcome []byte // commit entries only; nil if none
}

// Store holds the CS state: per group, the epoch, the next RequestTrack
// sequence number, digests of accepted commits, and an outbox of accepted
// items not yet forwarded. Decisions and the outbox entry they create are
// written in one atomic step, so a crash can never lose an accepted commit
// or accept two commits for one epoch. Implementations must be safe for
// concurrent use. A replicated implementation can replace BoltStore.
type Store interface {
	// SubmitRequest atomically either creates the group at epoch 0 (only if
	// mayCreate and the group does not exist) or assigns the next sequence
	// number to req and queues it for forwarding. A repeat of the creating
	// request (same bytes) while the group is still at epoch 0 reports
	// Created again, so a creator whose 201 was lost can retry. If the group
	// does not exist and !mayCreate it returns ErrUnknownGroup.
	SubmitRequest(ctx context.Context, group string, req []byte, mayCreate bool) (RequestResult, error)
	// SubmitCommit atomically compares epoch with the group's epoch; on a
	// match it increments the epoch, records the commit's digest and queues
	// commit and welcome for forwarding. An identical commit for an earlier
	// epoch is CommitDuplicate; its welcome, if the first for that epoch, is
	// queued (a committer using staged commits only gets the Welcome after
	// the CS accepted the Commit).
	SubmitCommit(ctx context.Context, group string, epoch uint64, commit, welcome []byte) (CommitResult, error)
	// Epoch returns the group's current epoch or ErrUnknownGroup.
	Epoch(ctx context.Context, group string) (uint64, error)
	// Outbox lists the group's unacknowledged entries in ID order.
	Outbox(ctx context.Context, group string) ([]OutboxEntry, error)
	// Ack removes a forwarded entry from the outbox. Acking an absent entry
	// is not an error.
	Ack(ctx context.Context, group string, id uint64) error
	// PendingGroups lists groups with a non-empty outbox.
	PendingGroups(ctx context.Context) ([]string, error)
	Close() error
}

// groupState is the fixed-size per-group record shared by both stores.
type groupState struct {
	Epoch      uint64
	NextReqSeq uint64
	Creator    [32]byte // SHA-256 of the request that created the group
}

const groupStateLen = 8 + 8 + 32

// commitRecord remembers the commit accepted for an epoch: its digest and
// whether a Welcome was queued for it. Encoded as digest || uint8 welcome.
type commitRecord struct {
	Digest  [32]byte
	Welcome bool
}

func (c commitRecord) marshal() []byte {
	b := append(c.Digest[:0:0], c.Digest[:]...)
	if c.Welcome {
		return append(b, 1)
	}
	return append(b, 0)
}

func unmarshalCommitRecord(b []byte) (commitRecord, bool) {
	var c commitRecord
	if len(b) != 33 {
		return c, false
	}
	copy(c.Digest[:], b)
	c.Welcome = b[32] == 1
	return c, true
}

func (g *groupState) marshal() []byte {
	b := make([]byte, groupStateLen)
	binary.BigEndian.PutUint64(b[0:], g.Epoch)
	binary.BigEndian.PutUint64(b[8:], g.NextReqSeq)
	copy(b[16:], g.Creator[:])
	return b
}

func unmarshalGroupState(b []byte) (groupState, error) {
	var g groupState
	if len(b) != groupStateLen {
		return g, fmt.Errorf("coord: corrupt group state record (%d bytes, want %d)", len(b), groupStateLen)
	}
	g.Epoch = binary.BigEndian.Uint64(b[0:])
	g.NextReqSeq = binary.BigEndian.Uint64(b[8:])
	copy(g.Creator[:], b[16:])
	return g, nil
}

// MemStore is an in-memory Store for tests. State is lost on exit.
type MemStore struct {
	mu     sync.Mutex
	closed bool
	groups map[string]*memGroup
}

type memGroup struct {
	state   groupState
	commits map[uint64]commitRecord
	outbox  map[uint64]OutboxEntry
	nextID  uint64
	log     map[archiveKey][]byte
}

// NewMemStore returns an empty in-memory store.
func NewMemStore() *MemStore { return &MemStore{groups: map[string]*memGroup{}} }

func (m *MemStore) lock() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrStoreClosed
	}
	return nil
}

func (m *MemStore) SubmitRequest(ctx context.Context, group string, req []byte, mayCreate bool) (RequestResult, error) {
	if err := m.lock(); err != nil {
		return RequestResult{}, err
	}
	defer m.mu.Unlock()
	digest := sha256.Sum256(req)
	g, ok := m.groups[group]
	if !ok {
		if !mayCreate {
			return RequestResult{}, ErrUnknownGroup
		}
		m.groups[group] = &memGroup{
			state:   groupState{Creator: digest},
			commits: map[uint64]commitRecord{},
			outbox:  map[uint64]OutboxEntry{},
			log:     map[archiveKey][]byte{},
		}
		return RequestResult{Created: true}, nil
	}
	if mayCreate && g.state.Epoch == 0 && g.state.Creator == digest {
		return RequestResult{Created: true}, nil
	}
	g.nextID++
	e := OutboxEntry{ID: g.nextID, Kind: OutboxRequest, Num: g.state.NextReqSeq, Payload: slices.Clone(req)}
	g.outbox[e.ID] = e
	g.log[archiveKey{archRequest, e.Num}] = e.Payload
	g.state.NextReqSeq++
	return RequestResult{Seq: e.Num, OutboxID: e.ID}, nil
}

func (m *MemStore) SubmitCommit(ctx context.Context, group string, epoch uint64, commit, welcome []byte) (CommitResult, error) {
	if err := m.lock(); err != nil {
		return CommitResult{}, err
	}
	defer m.mu.Unlock()
	g, ok := m.groups[group]
	if !ok {
		return CommitResult{}, ErrUnknownGroup
	}
	digest := sha256.Sum256(commit)
	if epoch != g.state.Epoch {
		rec, ok := g.commits[epoch]
		if !ok || rec.Digest != digest {
			return CommitResult{Outcome: CommitConflict, Epoch: g.state.Epoch}, nil
		}
		res := CommitResult{Outcome: CommitDuplicate, Epoch: g.state.Epoch}
		if welcome != nil && !rec.Welcome {
			g.commits[epoch] = commitRecord{Digest: digest, Welcome: true}
			g.nextID++
			e := OutboxEntry{ID: g.nextID, Kind: OutboxWelcome, Num: epoch, Welcome: slices.Clone(welcome)}
			g.outbox[e.ID] = e
			g.log[archiveKey{archWelcome, epoch}] = e.Welcome
			res.OutboxID = e.ID
		}
		return res, nil
	}
	g.commits[epoch] = commitRecord{Digest: digest, Welcome: welcome != nil}
	g.state.Epoch++
	g.nextID++
	e := OutboxEntry{ID: g.nextID, Kind: OutboxCommit, Num: epoch, Payload: slices.Clone(commit)}
	if welcome != nil {
		e.Welcome = slices.Clone(welcome)
		g.log[archiveKey{archWelcome, epoch}] = e.Welcome
	}
	g.log[archiveKey{archCommit, epoch}] = e.Payload
	g.outbox[e.ID] = e
	return CommitResult{Outcome: CommitAccepted, Epoch: g.state.Epoch, OutboxID: e.ID}, nil
}

func (m *MemStore) Epoch(ctx context.Context, group string) (uint64, error) {
	if err := m.lock(); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	g, ok := m.groups[group]
	if !ok {
		return 0, ErrUnknownGroup
	}
	return g.state.Epoch, nil
}

func (m *MemStore) Outbox(ctx context.Context, group string) ([]OutboxEntry, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	g, ok := m.groups[group]
	if !ok {
		return nil, ErrUnknownGroup
	}
	out := make([]OutboxEntry, 0, len(g.outbox))
	for _, e := range g.outbox {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *MemStore) Ack(ctx context.Context, group string, id uint64) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if g, ok := m.groups[group]; ok {
		delete(g.outbox, id)
	}
	return nil
}

func (m *MemStore) PendingGroups(ctx context.Context) ([]string, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	var out []string
	for name, g := range m.groups {
		if len(g.outbox) > 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (m *MemStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
