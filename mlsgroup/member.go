// Package mlsgroup is a thin adapter over github.com/thomas-vilte/mls-go
// v1.6.0 (the only package in this module that imports it). A Member is one
// identity in one MLS group, driven by the coordination service flow of
// draft-jennings-moq-e2ee-mls: create or join, stage a commit, confirm it on
// the CS's 200 or discard it on 409, apply other members' commits in epoch
// order, leave by proposing its own removal, and export the SFrame base key
// of RFC 9605 §5.2 for each epoch. See docs/mls.md.
//
// Members use X.509 credentials (RFC 9420 §5.3) and authenticate every
// other member: every credential a member meets — the KeyPackages it adds,
// every leaf of a Welcome's tree, every leaf after a commit it processes —
// must verify against the deployment's trust anchors (identity.Verifier,
// including that the certificate's key is the leaf's signature key), name an
// identity the admission policy admits to the group, and appear once. A
// Welcome or commit that fails is refused (ErrRefused) and not applied.
package mlsgroup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"sort"
	"sync"
	"time"

	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/keyschedule"

	mls "github.com/thomas-vilte/mls-go"
	"github.com/thomas-vilte/mls-go/ciphersuite"
	"github.com/thomas-vilte/mls-go/credentials"
	mlsgroup "github.com/thomas-vilte/mls-go/group"
	memorystore "github.com/thomas-vilte/mls-go/storage/memory"
)

// CipherSuite is the MLS cipher suite used:
// MLS_128_DHKEMP256_AES128GCM_SHA256_P256 (2). mls-go's X.509 credentials
// need ECDSA P-256 signatures.
const CipherSuite = ciphersuite.MLS128DHKEMP256

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
	// ErrRefused: a KeyPackage, Welcome or commit brings a credential that
	// does not verify, is not admitted by the policy, or claims an identity
	// already in the group. It wraps a *RefusedError naming the credential.
	// The Welcome or commit was not applied.
	ErrRefused = errors.New("mlsgroup: credential refused")
)

// RefusedError says which credential was refused and why (Err wraps an
// identity error: identity.ErrUntrusted, ErrExpired, ErrKeyUsage,
// ErrKeyMismatch, ErrNoName, ErrNotAdmitted, or ErrDuplicate).
type RefusedError struct {
	Leaf uint32 // leaf index in the refused tree; 0 for a KeyPackage
	Name string // the name the certificate claims, if it parses
	// Fingerprint is the SHA-256 of the certificate DER, in hex.
	Fingerprint string
	Err         error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("mlsgroup: credential refused (leaf %d, %q, sha256 %.16s): %v", e.Leaf, e.Name, e.Fingerprint, e.Err)
}

func (e *RefusedError) Unwrap() []error { return []error{ErrRefused, e.Err} }

// ErrDuplicate: two leaves (or a KeyPackage and a member) claim the same
// identity. A restarted member replaces its old leaf with ReplaceMember.
var ErrDuplicate = errors.New("mlsgroup: identity is already in the group")

// ErrGroupFull: admitting one more member would exceed the policy's
// MaxMembers for the group.
var ErrGroupFull = errors.New("mlsgroup: group is at the policy's maximum size")

// Authenticator is what a member checks every other member against.
type Authenticator struct {
	Verifier *identity.Verifier // required
	Policy   *identity.Policy   // required (identity.AllowAll admits any verified name)
}

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
	auth     Authenticator
	name     string
	identity []byte // own leaf certificate (DER): how mls-go names a member
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
	// store on every call (mls-go's default CacheNone), so it sees it. The
	// same mechanism undoes a commit whose new tree is refused.
	store    *memorystore.Store
	preStage []byte
	// adds are the KeyPackages (and names) proposed in epoch addsEpoch.
	adds      map[string]bool
	addsEpoch uint64
	// roster is the verified roster of the current tree, nil when it must
	// be checked again.
	roster []RosterEntry
	// verified caches chain verification by leaf certificate and signature
	// key: a tree changes by a few leaves per commit, and re-verifying
	// every certificate costs an ECDSA check per member. An entry holds
	// for at most verifiedFor, and never past the certificate's NotAfter.
	verified map[string]verifiedLeaf
}

type verifiedLeaf struct {
	id    identity.Identity
	until time.Time
}

const verifiedFor = time.Minute

// NewMember creates the MLS client for the identity of cert (an ECDSA P-256
// certificate and key; the key is also the MLS signature key) in the group
// named group. The MLS group_id is the group name's bytes, so the CS can
// check that commits belong to the group in the URL. cert must itself pass
// auth (a member does not start with a credential the others would refuse).
//
// mls-go logs through the logger given with WithLogger; by default its logs
// are discarded (they name identities and group IDs, never secrets).
func NewMember(cert *identity.Certificate, auth Authenticator, group string, opts ...Option) (*Member, error) {
	if group == "" {
		return nil, errors.New("mlsgroup: group name must be non-empty")
	}
	if auth.Verifier == nil || auth.Policy == nil {
		return nil, errors.New("mlsgroup: Authenticator needs a Verifier and a Policy")
	}
	if cert == nil || len(cert.Chain) == 0 || cert.Key == nil {
		return nil, errors.New("mlsgroup: NewMember needs a certificate and its key")
	}
	pub, err := cert.Key.PublicKey.ECDH()
	if err != nil {
		return nil, fmt.Errorf("mlsgroup: credential key: %w", err)
	}
	id, err := auth.Verifier.Verify(cert.Chain, pub.Bytes())
	if err != nil {
		return nil, fmt.Errorf("mlsgroup: own credential: %w", err)
	}
	if err := auth.Policy.Check(group, id.Name); err != nil {
		return nil, fmt.Errorf("mlsgroup: own credential: %w", err)
	}
	cfg := config{logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	st := memorystore.NewStore()
	m := &Member{auth: auth, name: id.Name, identity: append([]byte(nil), cert.Chain[0]...), group: []byte(group), store: st}
	c, err := mls.NewClient(m.identity, CipherSuite, mls.WithLogger(cfg.logger), mls.WithStorage(st, st),
		mls.WithCacheStrategy(mls.CacheNone), mls.WithX509Credential(cert.Chain[0], cert.Key),
		mls.WithCredentialValidator(validator{m}))
	if err != nil {
		return nil, fmt.Errorf("mlsgroup: new MLS client: %w", err)
	}
	m.c = c
	return m, nil
}

// validator is mls-go's credential hook: it runs on the KeyPackages mls-go
// adds and on every leaf of a Welcome's tree, before they are admitted.
// mls-go does not call it for the leaves of a received commit, and gives it
// no signature key; checkRoster covers both after every change.
type validator struct{ m *Member }

func (v validator) ValidateCredential(_ context.Context, c *credentials.Credential) error {
	if c == nil || c.Type() != credentials.X509Credential {
		return &RefusedError{Err: fmt.Errorf("%w: not an X.509 credential", identity.ErrNoName)}
	}
	id, err := v.m.auth.Verifier.Verify(c.Certificates, nil)
	if err == nil {
		err = v.m.auth.Policy.Check(string(v.m.group), id.Name)
	}
	if err != nil {
		return &RefusedError{Name: id.Name, Fingerprint: id.FingerprintHex(), Err: err}
	}
	return nil
}

// Name returns the member's verified identity (the name in its certificate).
func (m *Member) Name() string { return m.name }

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
	m.roster = nil
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
	m.roster = nil
	if _, err := m.checkRoster(ctx); err != nil {
		m.roster = nil
		// Forget the refused group: we stay outside, and a later Welcome
		// (for a new KeyPackage) may still bring us in.
		_ = m.store.DeleteGroupState(ctx, mlsgroup.NewGroupID(m.group))
		return false, err
	}
	m.joined, m.removed = true, false
	return true, nil
}

// RosterEntry is one verified member of the current epoch.
type RosterEntry struct {
	Leaf        uint32
	Name        string
	Fingerprint string // SHA-256 of the certificate DER, hex
	certificate []byte
}

// checkRoster verifies every leaf of the current tree (RFC 9420 §5.3.1):
// the certificate chains to an anchor and is valid now, its key is the
// leaf's signature key, the policy admits its name, no name appears twice,
// and the group is within the policy's size. It returns the roster in leaf
// order. m.mu is held.
func (m *Member) checkRoster(ctx context.Context) ([]RosterEntry, error) {
	members, err := m.c.ListMembers(ctx, m.group)
	if err != nil {
		return nil, fmt.Errorf("mlsgroup: members: %w", err)
	}
	group := string(m.group)
	out := make([]RosterEntry, 0, len(members))
	seen := make(map[string]uint32, len(members))
	now := m.auth.Verifier.Now()
	cache := make(map[string]verifiedLeaf, len(members))
	for _, mi := range members {
		key := string(mi.Identity) + string(mi.SigningKey)
		v, ok := m.verified[key]
		var err error
		if !ok || !now.Before(v.until) {
			v.id, err = m.auth.Verifier.Verify([][]byte{mi.Identity}, mi.SigningKey)
			v.until = now.Add(verifiedFor)
			if err == nil && v.id.Certificate.NotAfter.Before(v.until) {
				v.until = v.id.Certificate.NotAfter
			}
		}
		id := v.id
		if err == nil {
			cache[key] = v
		}
		if err == nil {
			err = m.auth.Policy.Check(group, id.Name)
		}
		if prev, dup := seen[id.Name]; err == nil && dup {
			err = fmt.Errorf("%w: %q at leaves %d and %d", ErrDuplicate, id.Name, prev, mi.LeafIndex)
		}
		if err != nil {
			return nil, &RefusedError{Leaf: mi.LeafIndex, Name: id.Name, Fingerprint: id.FingerprintHex(), Err: err}
		}
		seen[id.Name] = mi.LeafIndex
		out = append(out, RosterEntry{Leaf: mi.LeafIndex, Name: id.Name, Fingerprint: id.FingerprintHex(), certificate: mi.Identity})
	}
	m.verified = cache
	if max := m.auth.Policy.MaxMembers(group); len(out) > max {
		return nil, &RefusedError{Err: fmt.Errorf("%w: %d members, policy allows %d", ErrGroupFull, len(out), max)}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Leaf < out[j].Leaf })
	m.roster = out
	return out, nil
}

// verifiedRoster is the cached roster, verified again after any change.
func (m *Member) verifiedRoster(ctx context.Context) ([]RosterEntry, error) {
	if m.roster != nil {
		return m.roster, nil
	}
	return m.checkRoster(ctx)
}

// Roster returns the verified members of the current epoch in leaf order.
func (m *Member) Roster(ctx context.Context) ([]RosterEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkMember(); err != nil {
		return nil, err
	}
	r, err := m.verifiedRoster(ctx)
	return append([]RosterEntry(nil), r...), err
}

// KeyPackageIdentity verifies a joiner's KeyPackage credential (chain,
// validity, key usage, certificate key = leaf signature key, policy) and
// returns its identity. Errors wrap ErrRefused, or wire.ErrMalformed for
// bytes that are not a KeyPackage. MLS checks the KeyPackage's own
// signature when it is added.
func (m *Member) KeyPackageIdentity(keyPackage []byte) (identity.Identity, error) {
	leaf, err := wire.ParseKeyPackageLeaf(keyPackage)
	if err != nil {
		return identity.Identity{}, err
	}
	if leaf.CredentialType != wire.CredentialX509 {
		return identity.Identity{}, &RefusedError{Err: fmt.Errorf("%w: basic credential", identity.ErrNoName)}
	}
	id, err := m.auth.Verifier.Verify(leaf.Certificates, leaf.SignatureKey)
	if err == nil {
		err = m.auth.Policy.Check(string(m.group), id.Name)
	}
	if err != nil {
		return id, &RefusedError{Name: id.Name, Fingerprint: id.FingerprintHex(), Err: err}
	}
	return id, nil
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
//
// The KeyPackage must pass KeyPackageIdentity, and its identity must not be
// a member already (ErrDuplicate: use ReplaceMember for a restarted member)
// nor proposed in this epoch; errors wrap ErrRefused.
func (m *Member) AddMember(ctx context.Context, keyPackage []byte) error {
	return m.add(ctx, keyPackage, false)
}

// ReplaceMember adds a KeyPackage whose identity is already a member (a
// restarted member with a new key) and removes that identity's old leaf, so
// that the next commit does both at once. The new credential must verify
// like any other (KeyPackageIdentity).
func (m *Member) ReplaceMember(ctx context.Context, keyPackage []byte) error {
	return m.add(ctx, keyPackage, true)
}

func (m *Member) add(ctx context.Context, keyPackage []byte, replace bool) error {
	id, err := m.KeyPackageIdentity(keyPackage)
	if err != nil {
		return err
	}
	if err := m.lockIdle(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	old, err := m.leafCertificate(ctx, id.Name)
	if err != nil {
		return err
	}
	switch {
	case old != nil && !replace:
		return &RefusedError{Name: id.Name, Fingerprint: id.FingerprintHex(), Err: ErrDuplicate}
	case old != nil && string(old) == string(m.identity):
		// Our own identity with another key: only the other side of a
		// restart can be the new one; we never remove ourselves this way.
		return &RefusedError{Name: id.Name, Fingerprint: id.FingerprintHex(), Err: ErrDuplicate}
	}
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
	if m.adds[id.Name] {
		return &RefusedError{Name: id.Name, Fingerprint: id.FingerprintHex(), Err: fmt.Errorf("%w: proposed twice in epoch %d", ErrDuplicate, epoch)}
	}
	if old != nil {
		if _, err := m.c.ProposeRemoveMember(ctx, m.group, old); err != nil {
			return fmt.Errorf("mlsgroup: remove proposal for the replaced leaf: %w", err)
		}
	}
	if _, err := m.c.ProposeAddMember(ctx, m.group, keyPackage); err != nil {
		return fmt.Errorf("mlsgroup: add proposal: %w", err)
	}
	m.adds[string(keyPackage)], m.adds[id.Name] = true, true
	return nil
}

// leafCertificate returns the certificate (DER) of the member named name,
// nil if there is none: mls-go names members by their credential's
// certificate. m.mu is held.
func (m *Member) leafCertificate(ctx context.Context, name string) ([]byte, error) {
	r, err := m.verifiedRoster(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range r {
		if e.Name == name {
			return e.certificate, nil
		}
	}
	return nil, nil
}

// RemoveMember stores a Remove proposal for another member, by name;
// StageCommit includes it by value.
func (m *Member) RemoveMember(ctx context.Context, name string) error {
	if err := m.lockIdle(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	cert, err := m.leafCertificate(ctx, name)
	if err != nil {
		return err
	}
	if cert == nil {
		return fmt.Errorf("mlsgroup: remove %q: %w", name, mls.ErrMemberNotFound)
	}
	if _, err := m.c.ProposeRemoveMember(ctx, m.group, cert); err != nil {
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
	m.pending, m.preStage, m.roster = nil, nil, nil
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
	m.pending, m.preStage, m.roster = nil, nil, nil
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
	gid := mlsgroup.NewGroupID(m.group)
	pre, err := m.store.LoadGroupState(ctx, gid)
	if err != nil {
		return fmt.Errorf("mlsgroup: save state before the commit: %w", err)
	}
	m.roster = nil
	err = m.c.ProcessCommit(ctx, m.group, commit)
	if errors.Is(err, mls.ErrOwnLeafNotFound) {
		m.removed = true
		return ErrRemoved
	}
	if err != nil {
		return fmt.Errorf("mlsgroup: process commit for epoch %d: %w", epoch, err)
	}
	if _, err := m.checkRoster(ctx); err != nil {
		// Undo: the refused epoch is never used, not even for one export.
		m.roster = nil
		if rerr := m.store.SaveGroupState(ctx, gid, pre); rerr != nil {
			return errors.Join(err, fmt.Errorf("mlsgroup: restore state after refusing a commit: %w", rerr))
		}
		return fmt.Errorf("mlsgroup: commit for epoch %d: %w", epoch, err)
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

// KeyState returns the SFrame key material of the current epoch, with nk
// bytes of base key (BaseKeyLen for AES_128_GCM_SHA256_128): the base key
// is Export(keyschedule.ExporterLabel, nil, nk).
func (m *Member) KeyState(ctx context.Context, nk int) (KeyState, error) {
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
	if ks.BaseKey, err = m.c.Export(ctx, m.group, keyschedule.ExporterLabel, nil, nk); err != nil {
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

// Export is MLS-Exporter(label, context, length) of the current epoch
// (RFC 9420 §8.5), so that a Member is a keyschedule.Exporter:
// keyschedule.ExportEpoch(m, …) builds the epoch from it.
func (m *Member) Export(label string, exportContext []byte, length int) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkMember(); err != nil {
		return nil, err
	}
	out, err := m.c.Export(context.Background(), m.group, label, exportContext, length)
	if err != nil {
		return nil, fmt.Errorf("mlsgroup: export: %w", err)
	}
	return out, nil
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
