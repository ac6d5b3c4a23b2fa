// Package mlsgroup is a thin adapter over github.com/thomas-vilte/mls-go
// v1.6.0 (the only package in this module that imports it). A Member is one
// identity in one MLS group, driven by the coordination service flow of
// draft-jennings-moq-e2ee-mls: create or join, stage a commit, confirm it on
// the CS's 200 or discard it on 409, apply other members' commits in epoch
// order, leave by proposing its own removal, and export the SFrame base key
// of RFC 9605 §5.2 for each epoch. See docs/mls.md.
package mlsgroup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"sync"

	mls "github.com/thomas-vilte/mls-go"
	"github.com/thomas-vilte/mls-go/ciphersuite"
	mlsgroup "github.com/thomas-vilte/mls-go/group"
	memorystore "github.com/thomas-vilte/mls-go/storage/memory"
)

// SFrameExporterLabel is the MLS exporter label of RFC 9605 §5.2.
const SFrameExporterLabel = "SFrame 1.0 Base Key"

// CipherSuite is the MLS cipher suite used: MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 (1).
const CipherSuite = ciphersuite.MLS128DHKEMX25519

// BaseKeyLen is Nk of AES_128_GCM_SHA256_128 (SFrame suite 0x0004), 16 bytes.
const BaseKeyLen = 16

var (
	// ErrRemoved: a commit removed this member. Its MLS state is gone; to
	// rejoin, send a new join request with a fresh KeyPackage.
	ErrRemoved = errors.New("mlsgroup: this member was removed from the group")
	// ErrNotMember: the member has not created or joined the group yet.
	ErrNotMember = errors.New("mlsgroup: not a member of the group yet; create it (CS answered 201) or join from a Welcome")
	// ErrAlreadyMember: Create or a second join was attempted.
	ErrAlreadyMember = errors.New("mlsgroup: already a member of the group")
	// ErrPendingCommit: a staged commit awaits ConfirmCommit or DiscardCommit
	// (call one after the CS answers before anything else changes the group).
	ErrPendingCommit = errors.New("mlsgroup: a staged commit is pending; confirm or discard it first")
	// ErrNoPendingCommit: ConfirmCommit/DiscardCommit without StageCommit.
	ErrNoPendingCommit = errors.New("mlsgroup: no staged commit")
	// ErrStaleCommit: the commit is for an epoch already applied (e.g. our
	// own commit coming back on the CommitTrack). Ignore it.
	ErrStaleCommit = errors.New("mlsgroup: commit is for an epoch already applied")
	// ErrFutureCommit: the commit is for a later epoch; apply the missing
	// commits (earlier MoQ groups of the CommitTrack) first.
	ErrFutureCommit = errors.New("mlsgroup: commit is for a later epoch; apply the earlier commits first")
)

// Option configures NewMember.
type Option func(*config)

type config struct{ logger *slog.Logger }

// WithLogger sends mls-go's logs to l.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// Member is one identity's view of one MLS group. Safe for concurrent use.
type Member struct {
	mu       sync.Mutex
	c        *mls.Client
	identity []byte
	group    []byte
	joined   bool
	removed  bool
	pending  *mls.PendingCommitHandle
	pendingE uint64
	// store holds the client's group state. mls-go v1.6.0 overwrites the
	// private keys of the committer's direct-path nodes when it stages a
	// commit, and DiscardPendingCommit does not restore them: a member that
	// lost an epoch then cannot decrypt the winning commit's path secret
	// (TestDiscardedCommitKeepsPathKeys). preStage is the state saved before
	// staging, put back after a discard. The client reloads its state from
	// store on every call (mls-go's default CacheNone), so it sees it.
	store    *memorystore.Store
	preStage []byte
	// adds are the KeyPackages proposed in epoch addsEpoch.
	adds      map[string]bool
	addsEpoch uint64
}

// NewMember creates the MLS client for identity (a basic credential) in the
// group named group. The MLS group_id is the group name's bytes, so the CS
// can check that commits belong to the group in the URL.
//
// mls-go logs through the logger given with WithLogger; by default its logs
// are discarded (they name identities and group IDs, never secrets).
func NewMember(identity []byte, group string, opts ...Option) (*Member, error) {
	if len(identity) == 0 || group == "" {
		return nil, errors.New("mlsgroup: identity and group name must be non-empty")
	}
	cfg := config{logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	st := memorystore.NewStore()
	c, err := mls.NewClient(identity, CipherSuite, mls.WithLogger(cfg.logger), mls.WithStorage(st, st),
		mls.WithCacheStrategy(mls.CacheNone))
	if err != nil {
		return nil, fmt.Errorf("mlsgroup: new MLS client: %w", err)
	}
	return &Member{c: c, identity: append([]byte(nil), identity...), group: []byte(group), store: st}, nil
}

// Identity returns the member's credential identity.
func (m *Member) Identity() []byte { return append([]byte(nil), m.identity...) }

// GroupID returns the MLS group_id (the group name's bytes).
func (m *Member) GroupID() []byte { return append([]byte(nil), m.group...) }

func (m *Member) checkMember() error {
	if m.removed {
		return ErrRemoved
	}
	if !m.joined {
		return ErrNotMember
	}
	return nil
}

// KeyPackage returns a fresh KeyPackage (the body of a join request). The
// matching private keys stay in the member until a Welcome uses them.
func (m *Member) KeyPackage(ctx context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	kp, err := m.c.FreshKeyPackageBytes(ctx)
	if err != nil {
		return nil, fmt.Errorf("mlsgroup: key package: %w", err)
	}
	return kp, nil
}

// Create makes the one-member group at epoch 0 (after the CS answered 201).
func (m *Member) Create(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.joined {
		return ErrAlreadyMember
	}
	kp, err := m.c.FreshKeyPackageBytes(ctx)
	if err != nil {
		return fmt.Errorf("mlsgroup: key package: %w", err)
	}
	if _, err := m.c.CreateGroupWithExtensions(ctx, m.group, kp, nil); err != nil {
		return fmt.Errorf("mlsgroup: create group: %w", err)
	}
	m.joined, m.removed = true, false
	return nil
}

// Join processes a Welcome from the WelcomeTrack. joined is false (and err
// nil) when the Welcome is not for one of our KeyPackages, is for another
// group, or we are already a member: such Welcomes are to be ignored.
func (m *Member) Join(ctx context.Context, welcome []byte) (joined bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.joined {
		return false, nil
	}
	gid, err := m.c.JoinGroup(ctx, welcome)
	if errors.Is(err, mls.ErrNoPendingKeyPackage) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("mlsgroup: join from Welcome: %w", err)
	}
	if string(gid) != string(m.group) {
		// A Welcome for another MLS group that used our KeyPackage: not ours to use here.
		return false, nil
	}
	m.joined, m.removed = true, false
	return true, nil
}

// lockIdle locks m for a change that needs a current member with no staged
// commit; on success the caller unlocks.
func (m *Member) lockIdle() error {
	m.mu.Lock()
	if err := m.checkMember(); err != nil {
		m.mu.Unlock()
		return err
	}
	if m.pending != nil {
		m.mu.Unlock()
		return ErrPendingCommit
	}
	return nil
}

// AddMember stores an Add proposal for a joiner's KeyPackage (from the
// RequestTrack); StageCommit includes it by value. Adding the same
// KeyPackage again in the same epoch is a no-op: the proposal is kept after
// a discarded commit, so a retry in that epoch must not fail on it.
func (m *Member) AddMember(ctx context.Context, keyPackage []byte) error {
	if err := m.lockIdle(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	epoch, err := m.c.Epoch(ctx, m.group)
	if err != nil {
		return fmt.Errorf("mlsgroup: epoch: %w", err)
	}
	if m.adds == nil || m.addsEpoch != epoch {
		m.adds, m.addsEpoch = map[string]bool{}, epoch
	}
	if m.adds[string(keyPackage)] {
		return nil
	}
	if _, err := m.c.ProposeAddMember(ctx, m.group, keyPackage); err != nil {
		return fmt.Errorf("mlsgroup: add proposal: %w", err)
	}
	m.adds[string(keyPackage)] = true
	return nil
}

// RemoveMember stores a Remove proposal for another member, by identity;
// StageCommit includes it by value.
func (m *Member) RemoveMember(ctx context.Context, identity []byte) error {
	if err := m.lockIdle(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if _, err := m.c.ProposeRemoveMember(ctx, m.group, identity); err != nil {
		return fmt.Errorf("mlsgroup: remove proposal: %w", err)
	}
	return nil
}

// Leave returns this member's Remove proposal for itself, a signed MLS
// PublicMessage: the body of a leave request. (mls-go v1.6.0 has no
// SelfRemove proposal; see docs/mls.md.) A remaining member commits it; this
// member learns it is out when ProcessCommit returns ErrRemoved. If the
// epoch changes without removing us, the proposal has expired: call Leave
// again and send the new proposal.
func (m *Member) Leave(ctx context.Context) ([]byte, error) {
	if err := m.lockIdle(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	msg, err := m.c.ProposeRemoveMember(ctx, m.group, m.identity)
	if err != nil {
		return nil, fmt.Errorf("mlsgroup: self-remove proposal: %w", err)
	}
	// mls-go stores our own proposal without a proposal reference, but the
	// remaining member commits it by reference. Store it the way the others
	// do, so we can resolve the reference and learn of our removal.
	if err := m.c.CancelPendingProposals(ctx, m.group); err != nil {
		return nil, fmt.Errorf("mlsgroup: self-remove proposal: %w", err)
	}
	if err := m.c.ProcessPublicMessage(ctx, m.group, msg); err != nil {
		return nil, fmt.Errorf("mlsgroup: storing own self-remove proposal: %w", err)
	}
	return msg, nil
}

// ProcessProposal verifies and stores a proposal from another member (a
// leave request's self-Remove from the RequestTrack). Every member must
// process it before the commit that includes it arrives, because mls-go
// commits received proposals by reference.
func (m *Member) ProcessProposal(ctx context.Context, msg []byte) error {
	if err := m.lockIdle(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if err := m.c.ProcessPublicMessage(ctx, m.group, msg); err != nil {
		return fmt.Errorf("mlsgroup: process proposal: %w", err)
	}
	return nil
}

// StageCommit builds a Commit of all stored proposals without applying it.
// Send (epoch, commit) to the CS; then ConfirmCommit on 200/202 or
// DiscardCommit on 409.
func (m *Member) StageCommit(ctx context.Context) (epoch uint64, commit []byte, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkMember(); err != nil {
		return 0, nil, err
	}
	if m.pending != nil {
		return 0, nil, ErrPendingCommit
	}
	epoch, err = m.c.Epoch(ctx, m.group)
	if err != nil {
		return 0, nil, fmt.Errorf("mlsgroup: epoch: %w", err)
	}
	pre, err := m.store.LoadGroupState(ctx, mlsgroup.NewGroupID(m.group))
	if err != nil {
		return 0, nil, fmt.Errorf("mlsgroup: save state before staging: %w", err)
	}
	h, err := m.c.CommitPendingProposalsStaged(ctx, m.group)
	if err != nil {
		return 0, nil, fmt.Errorf("mlsgroup: stage commit: %w", err)
	}
	m.pending, m.pendingE, m.preStage = h, epoch, pre
	return epoch, append([]byte(nil), h.CommitBytes()...), nil
}

// ConfirmCommit applies the staged commit (the CS accepted it) and returns
// the Welcome for any added members (nil if none). mls-go creates the
// Welcome only now, so it must be sent separately from the commit: see
// docs/mls.md for how this fits the single CommitRequest.
func (m *Member) ConfirmCommit(ctx context.Context) (welcome []byte, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending == nil {
		return nil, ErrNoPendingCommit
	}
	h := m.pending
	m.pending, m.preStage = nil, nil
	w, err := m.c.ConfirmPendingCommit(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("mlsgroup: confirm commit: %w", err)
	}
	return w, nil
}

// DiscardCommit drops the staged commit (the CS answered 409). Stored
// proposals are kept; after applying the winning commit they are obsolete
// and must be proposed again (see Member docs in docs/mls.md).
func (m *Member) DiscardCommit(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending == nil {
		return ErrNoPendingCommit
	}
	h, pre := m.pending, m.preStage
	m.pending, m.preStage = nil, nil
	if err := m.c.DiscardPendingCommit(ctx, h); err != nil {
		return fmt.Errorf("mlsgroup: discard commit: %w", err)
	}
	if err := m.store.SaveGroupState(ctx, mlsgroup.NewGroupID(m.group), pre); err != nil {
		return fmt.Errorf("mlsgroup: restore state after discarding: %w", err)
	}
	return nil
}

// ProcessCommit applies a commit from the CommitTrack. epoch is the MoQ
// group ID of the object (the epoch the commit was made in). Commits must be
// applied in epoch order: ErrStaleCommit for an epoch already applied
// (ignore), ErrFutureCommit for a later one (apply the earlier ones first),
// ErrRemoved if this commit removed us.
func (m *Member) ProcessCommit(ctx context.Context, epoch uint64, commit []byte) error {
	if err := m.lockIdle(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	cur, err := m.c.Epoch(ctx, m.group)
	if err != nil {
		return fmt.Errorf("mlsgroup: epoch: %w", err)
	}
	switch {
	case epoch < cur:
		return fmt.Errorf("%w: commit epoch %d, member at %d", ErrStaleCommit, epoch, cur)
	case epoch > cur:
		return fmt.Errorf("%w: commit epoch %d, member at %d", ErrFutureCommit, epoch, cur)
	}
	err = m.c.ProcessCommit(ctx, m.group, commit)
	if errors.Is(err, mls.ErrOwnLeafNotFound) {
		m.removed = true
		return ErrRemoved
	}
	if err != nil {
		return fmt.Errorf("mlsgroup: process commit for epoch %d: %w", epoch, err)
	}
	return nil
}

// Removed reports whether a processed commit removed this member.
func (m *Member) Removed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.removed
}

// Epoch returns the member's current MLS epoch.
func (m *Member) Epoch(ctx context.Context) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkMember(); err != nil {
		return 0, err
	}
	return m.c.Epoch(ctx, m.group)
}

// KeyState is what SFrame needs from MLS for one epoch (RFC 9605 §5.2).
type KeyState struct {
	Epoch     uint64
	BaseKey   []byte // MLS-Exporter("SFrame 1.0 Base Key", "", Nk)
	LeafIndex uint32 // own leaf index (SFrame sender index)
	// GroupSize is the number of leaves of the ratchet tree (a power of two,
	// RFC 9420 §7.8), which bounds every leaf index.
	GroupSize uint32
	// Members is the number of non-blank leaves.
	Members int
}

// Export returns the SFrame key material of the current epoch, with nk
// bytes of base key (BaseKeyLen for AES_128_GCM_SHA256_128).
func (m *Member) Export(ctx context.Context, nk int) (KeyState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkMember(); err != nil {
		return KeyState{}, err
	}
	var ks KeyState
	var err error
	if ks.Epoch, err = m.c.Epoch(ctx, m.group); err != nil {
		return KeyState{}, fmt.Errorf("mlsgroup: epoch: %w", err)
	}
	if ks.BaseKey, err = m.c.Export(ctx, m.group, SFrameExporterLabel, nil, nk); err != nil {
		return KeyState{}, fmt.Errorf("mlsgroup: export: %w", err)
	}
	if ks.LeafIndex, err = m.c.OwnLeafIndex(ctx, m.group); err != nil {
		return KeyState{}, fmt.Errorf("mlsgroup: own leaf: %w", err)
	}
	members, err := m.c.ListMembers(ctx, m.group)
	if err != nil {
		return KeyState{}, fmt.Errorf("mlsgroup: members: %w", err)
	}
	ks.Members = len(members)
	ks.GroupSize = leafCount(members)
	return ks, nil
}

// leafCount is the smallest power of two above the highest occupied leaf
// index: after RFC 9420 §7.8 truncation the tree has exactly that many leaves.
func leafCount(members []mls.MemberInfo) uint32 {
	var max uint32
	for _, mi := range members {
		if mi.LeafIndex > max {
			max = mi.LeafIndex
		}
	}
	if max == 0 {
		return 1
	}
	return 1 << bits.Len32(max)
}

// MemberIdentities lists the identities of the current members by leaf index.
func (m *Member) MemberIdentities(ctx context.Context) (map[uint32][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkMember(); err != nil {
		return nil, err
	}
	members, err := m.c.ListMembers(ctx, m.group)
	if err != nil {
		return nil, fmt.Errorf("mlsgroup: members: %w", err)
	}
	out := make(map[uint32][]byte, len(members))
	for _, mi := range members {
		out[mi.LeafIndex] = mi.Identity
	}
	return out, nil
}

// Close releases the MLS client. A pending staged commit is discarded first.
func (m *Member) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending != nil {
		_ = m.c.DiscardPendingCommit(context.Background(), m.pending)
		m.pending = nil
	}
	return m.c.Close()
}
