package keyschedule

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moqsframe/moqsframe/sframe"
)

// ExporterLabel is the MLS exporter label of RFC 9605 §5.2:
// base_key = MLS-Exporter("SFrame 1.0 Base Key", "", AEAD.Nk).
const ExporterLabel = "SFrame 1.0 Base Key"

// An Exporter is the part of an MLS group state this package needs: the
// MLS-Exporter function of RFC 9420 §8.5 for the group's current epoch.
type Exporter interface {
	Export(label string, context []byte, length int) ([]byte, error)
}

// An Epoch is what the MLS layer hands over for each epoch.
type Epoch struct {
	Number uint64 // the MLS epoch number

	// BaseKey is MLS-Exporter(ExporterLabel, "", suite.KeySize()). Install
	// copies it; the caller may clear its own copy afterwards.
	BaseKey []byte

	// GroupSize is the number of leaves in the MLS tree, blanks included:
	// every member's leaf index is below it. It sets S, the index bits.
	GroupSize int

	// Index is the local member's leaf index.
	Index uint64

	// Members is the number of occupied leaves, the base for a
	// coordinated roll-over quorum. Zero means GroupSize.
	Members int

	// Immediate makes Seal switch to this epoch at once even in
	// coordinated mode. Set it for an epoch that removed members: waiting
	// for acknowledgements would keep sealing with keys they hold.
	Immediate bool
}

// ExportEpoch builds the Epoch for the exporter's current MLS epoch: it
// calls ex.Export(ExporterLabel, nil, suite.KeySize()).
func ExportEpoch(ex Exporter, suite sframe.CipherSuite, number uint64, groupSize int, index uint64) (Epoch, error) {
	if !suite.Supported() {
		return Epoch{}, sframe.ErrUnsupportedSuite
	}
	if ex == nil {
		return Epoch{}, fmt.Errorf("%w: nil exporter", ErrInvalidConfig)
	}
	bk, err := ex.Export(ExporterLabel, nil, suite.KeySize())
	if err != nil {
		return Epoch{}, fmt.Errorf("keyschedule: MLS exporter for epoch %d: %w", number, err)
	}
	return Epoch{Number: number, BaseKey: bk, GroupSize: groupSize, Index: index}, nil
}

// A Schedule turns MLS epochs into SFrame keys for one member of one group
// (RFC 9605 §5.2). It encrypts with the member's own per-epoch keys and
// decrypts with the other members' keys, choosing the epoch by the low E
// bits of the KID. Install, Tick and Acknowledge serialise among
// themselves; Seal and Open never wait for them.
//
// A member must have exactly one Schedule per group: two Schedules holding
// the same epoch for the same leaf index would reuse nonces.
type Schedule struct {
	suite       sframe.CipherSuite
	cfg         config
	mask        uint64
	retireAfter time.Duration
	rxOpts      []sframe.ReceiverOption

	snap atomic.Pointer[snapshot]

	mu       sync.Mutex                          // serialises writers of snap, early, reserved
	reserved atomic.Pointer[map[uint64]struct{}] // stream base contexts
	early    map[uint64]map[uint64]struct{}      // acks for epochs not yet installed
	earlyN   int

	def *Stream

	stats struct {
		installed, retired, evicted, promotedQuorum, promotedTimeout, promotedForced atomic.Uint64
		rotations, hardLimit, openUnknownEpoch, openRetired                          atomic.Uint64
	}
}

// maxEarlyAcks bounds the acknowledgements buffered for future epochs.
const maxEarlyAcks = 4096

// snapshot is an immutable view of the installed epochs. Readers load it
// through Schedule.snap; writers publish a modified copy.
type snapshot struct {
	slots    []slot // 1<<E, indexed by epoch mod 2^E
	latest   *epochState
	send     *epochState // epoch Seal encrypts with
	pending  *epochState // coordinated mode: newer epoch waiting for quorum
	deadline time.Time   // coordinated mode: when pending is used regardless
	live     []*epochState
}

type slot struct {
	ep         *epochState // nil if empty or retired
	retired    bool
	retiredNum uint64
}

func (s *snapshot) clone() *snapshot {
	c := *s
	c.slots = slices.Clone(s.slots)
	c.live = slices.Clone(s.live)
	return &c
}

// epochState is one installed epoch. Its identity fields are immutable;
// supersededAt and the ack fields belong to Schedule.mu; the sending fields
// to smu.
type epochState struct {
	num       uint64
	layout    Layout
	groupSize uint64
	index     uint64
	maxCtx    uint64
	baseKey   []byte
	rx        *sframe.Receiver

	supersededAt time.Time
	acks         []uint64 // bitset of members known to hold the epoch
	nacks, need  int

	smu       sync.Mutex
	byCtx     map[uint64]*sendKey
	nextCtx   uint64
	ctxDone   bool // no context value above nextCtx-1 is left
	usageSent atomic.Bool
	exhausted atomic.Bool
}

// New returns a Schedule for the cipher suite with no epoch installed.
func New(suite sframe.CipherSuite, opts ...Option) (*Schedule, error) {
	if !suite.Supported() {
		return nil, fmt.Errorf("%w: %v", sframe.ErrUnsupportedSuite, suite)
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	s := &Schedule{suite: suite, cfg: cfg, mask: lowMask(cfg.epochBits), retireAfter: cfg.grace}
	if cfg.coordinated {
		s.retireAfter += cfg.timeout
	}
	if cfg.replaySet {
		s.rxOpts = append(s.rxOpts, sframe.WithReplayWindow(cfg.replay))
	}
	s.snap.Store(&snapshot{slots: make([]slot, 1<<cfg.epochBits)})
	s.reserved.Store(&map[uint64]struct{}{0: {}})
	s.def = &Stream{s: s, base: 0}
	return s, nil
}

// Suite returns the schedule's cipher suite.
func (s *Schedule) Suite() sframe.CipherSuite { return s.suite }

// Overhead returns the most bytes Seal adds to a plaintext: the longest
// SFrame header plus the suite's tag.
func (s *Schedule) Overhead() int { return sframe.MaxHeaderLen + s.suite.TagSize() }

func (s *Schedule) newEpochState(e Epoch) (*epochState, error) {
	if len(e.BaseKey) != s.suite.KeySize() {
		return nil, fmt.Errorf("%w: epoch %d: base key is %d bytes, suite %v needs %d", ErrInvalidEpoch, e.Number, len(e.BaseKey), s.suite, s.suite.KeySize())
	}
	if e.GroupSize < 1 {
		return nil, fmt.Errorf("%w: epoch %d: group size %d", ErrInvalidEpoch, e.Number, e.GroupSize)
	}
	if e.Index >= uint64(e.GroupSize) {
		return nil, fmt.Errorf("%w: epoch %d: index %d outside group of %d", ErrInvalidEpoch, e.Number, e.Index, e.GroupSize)
	}
	if e.Members < 0 || e.Members > e.GroupSize {
		return nil, fmt.Errorf("%w: epoch %d: %d members in a group of %d leaves", ErrInvalidEpoch, e.Number, e.Members, e.GroupSize)
	}
	l, err := NewLayout(uint64(e.GroupSize), s.cfg.epochBits)
	if err != nil {
		return nil, err
	}
	ep := &epochState{
		num:       e.Number,
		layout:    l,
		groupSize: uint64(e.GroupSize),
		index:     e.Index,
		maxCtx:    min(s.cfg.maxContext, l.MaxContext()),
		baseKey:   slices.Clone(e.BaseKey),
		byCtx:     map[uint64]*sendKey{},
	}
	members := e.Members
	if members == 0 {
		members = e.GroupSize
	}
	if s.cfg.coordinated {
		ep.need = max(1, min(s.cfg.quorum(members), members))
	}
	opts := append(slices.Clip(s.rxOpts), sframe.WithKeyResolver(ep.resolve(s.suite)))
	ep.rx = sframe.NewReceiver(opts...)
	return ep, nil
}

// resolve returns the epoch receiver's key resolver: it accepts the KIDs of
// the other members of the epoch, within the context bound, and nothing
// else. It is cheap to refuse, since anyone can send any KID.
func (ep *epochState) resolve(suite sframe.CipherSuite) sframe.KeyResolver {
	return func(kid uint64) (sframe.CipherSuite, []byte, bool) {
		ctx, idx, low := ep.layout.Split(kid)
		if low != ep.num&lowMask(ep.layout.EpochBits) || idx >= ep.groupSize || idx == ep.index || ctx > ep.maxCtx {
			return 0, nil, false
		}
		return suite, ep.baseKey, true
	}
}

// Install adds an epoch. Its decryption keys are usable at once. Unless the
// schedule is in coordinated mode, Seal switches to it at once too. An
// installed epoch whose number has the same low E bits is removed (RFC 9605
// §5.2), and superseded epochs past their grace period are retired.
// Epochs must come in increasing order: an epoch number not above the
// newest installed one gets ErrStaleEpoch.
func (s *Schedule) Install(e Epoch) error {
	ep, err := s.newEpochState(e)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.snap.Load()
	if old.latest != nil && e.Number <= old.latest.num {
		return fmt.Errorf("%w: epoch %d, newest is %d", ErrStaleEpoch, e.Number, old.latest.num)
	}
	now := s.cfg.now()
	ns := old.clone()
	idx := e.Number & s.mask
	evicted := ns.slots[idx].ep
	ns.slots[idx] = slot{ep: ep}
	if evicted != nil {
		ns.live = slices.DeleteFunc(ns.live, func(x *epochState) bool { return x == evicted })
		s.stats.evicted.Add(1)
	}
	if old.latest != nil && old.latest.supersededAt.IsZero() {
		old.latest.supersededAt = now
	}
	ns.live = append(ns.live, ep)
	ns.latest = ep
	s.stats.installed.Add(1)

	switch {
	case !s.cfg.coordinated || ns.send == nil:
		ns.send, ns.pending = ep, nil
	case e.Immediate:
		ns.send, ns.pending, ns.deadline = ep, nil, time.Time{}
		s.stats.promotedForced.Add(1)
	case ns.send == evicted || e.Number-ns.send.num >= uint64(len(ns.slots))-1:
		// The epoch we were sending with is gone, or will be gone with the
		// next epoch, from receivers following the MUST of §5.2 — and
		// receivers may be an epoch ahead of us. Waiting longer would
		// make our objects undecryptable.
		ns.send, ns.pending = ep, nil
		s.stats.promotedForced.Add(1)
	default:
		if ns.pending == nil {
			// The timeout runs from when the send epoch was first
			// superseded, so a burst of commits cannot starve roll-over.
			ns.deadline = now.Add(s.cfg.timeout)
		}
		ns.pending = ep
		ep.acks = make([]uint64, (ep.groupSize+63)/64)
		ep.ack(ep.index)
		for m := range s.early[e.Number] {
			if m < ep.groupSize {
				ep.ack(m)
			}
		}
		if ep.nacks >= ep.need {
			s.promoteLocked(ns, &s.stats.promotedQuorum)
		}
	}
	for n, set := range s.early {
		if n <= e.Number {
			s.earlyN -= len(set)
			delete(s.early, n)
		}
	}
	s.retireLocked(ns, now)
	s.snap.Store(ns)
	return nil
}

func (ep *epochState) ack(m uint64) {
	w, b := m/64, uint64(1)<<(m%64)
	if ep.acks[w]&b == 0 {
		ep.acks[w] |= b
		ep.nacks++
	}
}

func (s *Schedule) promoteLocked(ns *snapshot, why *atomic.Uint64) {
	ns.send, ns.pending, ns.deadline = ns.pending, nil, time.Time{}
	why.Add(1)
}

// retireLocked tombstones superseded epochs whose grace period is over.
// The newest epoch and the epochs Seal uses or will use are kept.
func (s *Schedule) retireLocked(ns *snapshot, now time.Time) {
	ns.live = slices.DeleteFunc(ns.live, func(ep *epochState) bool {
		if ep == ns.latest || ep == ns.send || ep == ns.pending || ep.supersededAt.IsZero() ||
			now.Sub(ep.supersededAt) < s.retireAfter {
			return false
		}
		ns.slots[ep.num&s.mask] = slot{retired: true, retiredNum: ep.num}
		s.stats.retired.Add(1)
		return true
	})
}

// Tick applies the time-based rules: it retires superseded epochs whose
// grace period is over and, in coordinated mode, switches Seal to the
// pending epoch once the roll-over timeout has passed. Call it
// periodically (for example every second); Install applies the same rules.
func (s *Schedule) Tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tickLocked(s.snap.Load())
}

func (s *Schedule) tickLocked(old *snapshot) {
	now := s.cfg.now()
	ns := old.clone()
	if ns.pending != nil && !now.Before(ns.deadline) {
		s.promoteLocked(ns, &s.stats.promotedTimeout)
	}
	s.retireLocked(ns, now)
	if ns.send != old.send || len(ns.live) != len(old.live) {
		s.snap.Store(ns)
	}
}

// maybePromote is Seal's check of the coordinated roll-over timeout. It runs
// only while an epoch is pending and never waits: if a writer holds the
// lock, Seal goes on with the current epoch.
func (s *Schedule) maybePromote(snap *snapshot) *snapshot {
	if s.cfg.now().Before(snap.deadline) || !s.mu.TryLock() {
		return snap
	}
	defer s.mu.Unlock()
	s.tickLocked(s.snap.Load())
	return s.snap.Load()
}

// Acknowledge records, for coordinated roll-over, that member holds epoch.
// When the pending epoch reaches its quorum, Seal switches to it.
// Acknowledgements for epochs not yet installed locally are kept (a bounded
// number) and applied on Install; those for older epochs are ignored. It is
// a no-op when coordinated roll-over is off.
func (s *Schedule) Acknowledge(epoch, member uint64) error {
	if !s.cfg.coordinated {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.snap.Load()
	if snap.latest == nil || epoch > snap.latest.num {
		return s.stashAckLocked(snap, epoch, member)
	}
	p := snap.pending
	if p == nil || epoch != p.num {
		return nil // we already send with it, or it was superseded
	}
	if member >= p.groupSize {
		return fmt.Errorf("%w: member %d, epoch %d has %d leaves", ErrInvalidMember, member, epoch, p.groupSize)
	}
	p.ack(member)
	if p.nacks >= p.need {
		ns := snap.clone()
		s.promoteLocked(ns, &s.stats.promotedQuorum)
		s.retireLocked(ns, s.cfg.now())
		s.snap.Store(ns)
	}
	return nil
}

func (s *Schedule) stashAckLocked(snap *snapshot, epoch, member uint64) error {
	if snap.latest != nil && epoch-snap.latest.num > uint64(len(snap.slots)) {
		return fmt.Errorf("%w: epoch %d is too far ahead of %d", ErrAckOverflow, epoch, snap.latest.num)
	}
	if s.early == nil {
		s.early = map[uint64]map[uint64]struct{}{}
	}
	set := s.early[epoch]
	if _, ok := set[member]; ok {
		return nil
	}
	if s.earlyN >= maxEarlyAcks {
		return ErrAckOverflow
	}
	if set == nil {
		set = map[uint64]struct{}{}
		s.early[epoch] = set
	}
	set[member] = struct{}{}
	s.earlyN++
	return nil
}

// Open decrypts an SFrame ciphertext from another member: it picks the
// epoch from the KID's low E bits and opens with that epoch's receiver,
// which derives the sender's key on first use. Besides the sframe errors
// (ErrMalformedHeader, ErrTruncated, ErrUnknownKID, ErrAuthentication,
// ErrReplay) it returns ErrUnknownEpoch or ErrEpochRetired, both of which
// also match sframe.ErrUnknownKID. A late object of an epoch removed by
// slot reuse (§5.2) has a KID of the epoch now in its slot and fails with
// sframe.ErrAuthentication: it cannot be told from a forgery. Ciphertexts
// with the local member's own KIDs are refused (RFC 9605 §4.4.1: a key is
// for encryption or decryption, never both).
func (s *Schedule) Open(dst, metadata, ciphertext []byte) ([]byte, error) {
	rx, err := s.receiverFor(ciphertext)
	if err != nil {
		return nil, err
	}
	return rx.Open(dst, metadata, ciphertext)
}

// receiverFor is the decrypt-path key lookup: parse the KID, load the
// snapshot, index the epoch table.
func (s *Schedule) receiverFor(ciphertext []byte) (*sframe.Receiver, error) {
	h, _, err := sframe.ParseHeader(ciphertext)
	if err != nil {
		return nil, err
	}
	sl := &s.snap.Load().slots[h.KID&s.mask]
	if sl.ep != nil {
		return sl.ep.rx, nil
	}
	if sl.retired {
		s.stats.openRetired.Add(1)
		return nil, errOpenRetired
	}
	s.stats.openUnknownEpoch.Add(1)
	return nil, errOpenUnknownEpoch
}

// Status is a point-in-time report of a Schedule, for monitoring and tests.
type Status struct {
	Installed    bool      // whether any epoch is installed
	Latest       uint64    // newest installed epoch
	Send         uint64    // epoch Seal encrypts with
	Pending      bool      // coordinated mode: a newer epoch awaits its quorum
	PendingEpoch uint64    // that epoch
	Acks, Quorum int       // its acknowledgements (self included) and quorum
	Deadline     time.Time // when it is used regardless
	Live         []uint64  // decryptable epochs, ascending

	Installs, Retired, Evicted           uint64 // epochs installed, retired by grace, removed by §5.2 slot reuse
	PromotedQuorum, PromotedTimeout      uint64 // coordinated switches by quorum and by timeout
	PromotedForced                       uint64 // switches without a quorum: the send epoch was removed, or the new one is Immediate
	Rotations, HardLimitHits             uint64 // context changes for usage; sframe refusals seen (should be 0)
	OpenUnknownEpoch, OpenRetiredRefused uint64 // Open refusals by this layer
}

// Status returns the schedule's current state and counters.
func (s *Schedule) Status() Status {
	s.mu.Lock()
	snap := s.snap.Load()
	st := Status{Installed: snap.latest != nil}
	if snap.latest != nil {
		st.Latest, st.Send = snap.latest.num, snap.send.num
	}
	if p := snap.pending; p != nil {
		st.Pending, st.PendingEpoch, st.Acks, st.Quorum, st.Deadline = true, p.num, p.nacks, p.need, snap.deadline
	}
	s.mu.Unlock()
	for _, ep := range snap.live {
		st.Live = append(st.Live, ep.num)
	}
	st.Installs = s.stats.installed.Load()
	st.Retired = s.stats.retired.Load()
	st.Evicted = s.stats.evicted.Load()
	st.PromotedQuorum = s.stats.promotedQuorum.Load()
	st.PromotedTimeout = s.stats.promotedTimeout.Load()
	st.PromotedForced = s.stats.promotedForced.Load()
	st.Rotations = s.stats.rotations.Load()
	st.HardLimitHits = s.stats.hardLimit.Load()
	st.OpenUnknownEpoch = s.stats.openUnknownEpoch.Load()
	st.OpenRetiredRefused = s.stats.openRetired.Load()
	return st
}
