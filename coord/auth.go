package coord

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/identity"
)

// Refusal reasons: the "error" field of 401, 403 and 429 answers (the
// human-readable text is in "message") and the reason label of
// sframe_cs_refused_total.
const (
	// 401: the request carries no verified client identity.
	ReasonUnauthenticated = "unauthenticated"
	// 403: the policy does not admit the caller to the URL's group.
	ReasonNotAdmitted = "not_admitted"
	// 403: a join's KeyPackage has no X.509 credential, or its chain does
	// not verify (anchor, validity, key usage, certificate key = leaf
	// signature key).
	ReasonKeyPackageCredentialInvalid = "keypackage_credential_invalid"
	// 403: a join's KeyPackage names another identity than the caller's
	// client certificate.
	ReasonKeyPackageIdentityMismatch = "keypackage_identity_mismatch"
	// 403: an EpochAck's identity is set and is not the caller's.
	ReasonAckIdentityMismatch = "ack_identity_mismatch"
	// 429: the caller's request rate exceeded Auth.Rate/Auth.Burst.
	ReasonRateLimited = "rate_limited"
	// 429: the caller already has a (different) pending join in the group.
	ReasonJoinPending = "join_pending"
	// 429: the group has Policy.MaxMembers(group) pending joins.
	ReasonGroupJoinsFull = "group_joins_full"
	// TLS handshake refused (no HTTP answer): the client certificate does
	// not chain to the trust anchor, is expired or not yet valid, lacks
	// the clientAuth/digitalSignature usages, or names no identity.
	ReasonTLSUntrusted = "tls_certificate_untrusted"
	ReasonTLSExpired   = "tls_certificate_expired"
	ReasonTLSKeyUsage  = "tls_certificate_key_usage"
	ReasonTLSInvalid   = "tls_certificate_invalid"
	ReasonTLSNone      = "tls_no_certificate"
)

// HandshakeRefused counts a client certificate refused during the TLS
// handshake (identity.ServerTLS's onRefused), by the kind of err.
func (m *Metrics) HandshakeRefused(err error) {
	switch {
	case errors.Is(err, identity.ErrUntrusted):
		m.refused(ReasonTLSUntrusted)
	case errors.Is(err, identity.ErrExpired):
		m.refused(ReasonTLSExpired)
	case errors.Is(err, identity.ErrKeyUsage):
		m.refused(ReasonTLSKeyUsage)
	case errors.Is(err, identity.ErrNoPeerCertificate):
		m.refused(ReasonTLSNone)
	default:
		m.refused(ReasonTLSInvalid)
	}
}

// refusalReasons lists every reason, so /metrics shows each from the start.
var refusalReasons = []string{
	ReasonUnauthenticated, ReasonNotAdmitted, ReasonKeyPackageCredentialInvalid,
	ReasonKeyPackageIdentityMismatch, ReasonAckIdentityMismatch, ReasonRateLimited,
	ReasonJoinPending, ReasonGroupJoinsFull,
	ReasonTLSUntrusted, ReasonTLSExpired, ReasonTLSKeyUsage, ReasonTLSInvalid, ReasonTLSNone,
	ReasonCommitProcessed, ReasonTooEarly,
}

// Status classes of refusals, matched with errors.Is by *RefusedError (server
// side) and *StatusError (Client side).
var (
	ErrUnauthenticated = errors.New("coord: the CS could not authenticate the caller (401)")
	ErrForbidden       = errors.New("coord: the CS's policy refuses the request (403)")
	ErrTooManyRequests = errors.New("coord: the CS limits the caller's requests (429)")
)

// RefusedError is a request refused by Auth: Code is 401, 403 or 429,
// Reason one of the Reason* constants. errors.Is matches ErrUnauthenticated,
// ErrForbidden or ErrTooManyRequests by Code.
type RefusedError struct {
	Code       int
	Reason     string
	Message    string
	RetryAfter time.Duration // 429 only
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("coord: refused (%d %s): %s", e.Code, e.Reason, e.Message)
}

// Is maps the status code to its class sentinel.
func (e *RefusedError) Is(target error) bool { return classOf(e.Code) == target && target != nil }

func classOf(code int) error {
	switch code {
	case http.StatusUnauthorized:
		return ErrUnauthenticated
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusTooManyRequests:
		return ErrTooManyRequests
	}
	return nil
}

// Defaults of Auth.
const (
	DefaultRate           = 20.0
	DefaultBurst          = 40
	DefaultPendingJoinTTL = time.Minute
)

// Auth authenticates and authorizes every request of a Server
// (Config.Auth). Every endpoint then requires:
//
//   - an identity (Identify): else 401 unauthenticated;
//   - a request rate within Rate/Burst for that identity (a token bucket per
//     identity, over all groups and endpoints): else 429 rate_limited with
//     Retry-After;
//   - an identity the Policy admits to the URL's group: else 403
//     not_admitted. So only an admitted identity can create a group (the
//     first join), post leaves, commits and acks, or read the archive.
//
// A join additionally needs a KeyPackage with an X.509 credential that
// Verifier accepts for the leaf's signature key (else 403
// keypackage_credential_invalid) and that names the caller (else 403
// keypackage_identity_mismatch), and is bounded while pending: at most one
// pending join per identity and group (a different one is refused with 429
// join_pending; the identical one is answered again, see below) and at most
// Policy.MaxMembers(group) per group (429 group_joins_full).
//
// A join is pending from its 200/202 until the CS accepts the next commit
// for the group (members commit every join they have seen, so a commit
// normally settles them all), or until PendingJoinTTL has passed (so that a
// group without an active committer does not lock a joiner out for good).
// The group-creating join (201) is never pending. The identical join (same
// body, same identity) while it is pending is answered again with its
// sequence number and not queued twice, so a client may retry a lost
// answer. Pending state is in memory: a restarted CS starts with none.
type Auth struct {
	// Policy admits identities to groups. Required.
	Policy *identity.Policy
	// Verifier checks join KeyPackages' X.509 credentials. Required.
	Verifier *identity.Verifier
	// Identify returns the caller's authenticated name. nil: the name of
	// the TLS client certificate, verified with Verifier
	// (Verifier.Peer(r.TLS)); the TLS server should use identity.ServerTLS,
	// which refuses other certificates already at the handshake.
	Identify func(r *http.Request) (string, error)
	// Rate (requests per second) and Burst bound each identity's requests;
	// 0: DefaultRate, DefaultBurst.
	Rate  float64
	Burst int
	// PendingJoinTTL: a join stops counting as pending after this long;
	// 0: DefaultPendingJoinTTL.
	PendingJoinTTL time.Duration
	// Now is the clock of the rate limiter and of pending joins; nil:
	// time.Now. (Certificate validity uses the Verifier's clock.)
	Now func() time.Time
}

// maxBuckets triggers a sweep of idle token buckets, so that the limiter's
// memory stays bounded by the identities active within one refill period.
const maxBuckets = 10000

type authState struct {
	cfg Auth

	mu      sync.Mutex
	buckets map[string]*bucket
	pending map[string]map[string]pendingJoin // group -> identity -> join
}

type bucket struct {
	tokens float64
	last   time.Time
}

type pendingJoin struct {
	at       time.Time
	digest   [sha256.Size]byte
	seq      uint64
	outboxID uint64
}

func newAuthState(a Auth) (*authState, error) {
	if a.Policy == nil || a.Verifier == nil {
		return nil, errors.New("coord: Config.Auth needs a Policy and a Verifier")
	}
	if a.Rate < 0 || a.Burst < 0 || a.PendingJoinTTL < 0 {
		return nil, errors.New("coord: Config.Auth: Rate, Burst and PendingJoinTTL must not be negative")
	}
	if a.Identify == nil {
		v := a.Verifier
		a.Identify = func(r *http.Request) (string, error) {
			id, err := v.Peer(r.TLS)
			return id.Name, err
		}
	}
	if a.Rate == 0 {
		a.Rate = DefaultRate
	}
	if a.Burst == 0 {
		a.Burst = DefaultBurst
	}
	if a.PendingJoinTTL == 0 {
		a.PendingJoinTTL = DefaultPendingJoinTTL
	}
	if a.Now == nil {
		a.Now = time.Now
	}
	return &authState{cfg: a, buckets: map[string]*bucket{}, pending: map[string]map[string]pendingJoin{}}, nil
}

// allow takes a token from id's bucket, or says how long until one is there.
func (a *authState) allow(id string) (bool, time.Duration) {
	now := a.cfg.Now()
	burst := float64(a.cfg.Burst)
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.buckets[id]
	if b == nil {
		if len(a.buckets) >= maxBuckets {
			a.sweepLocked(now)
		}
		b = &bucket{tokens: burst, last: now}
		a.buckets[id] = b
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*a.cfg.Rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / a.cfg.Rate * float64(time.Second))
}

// sweepLocked drops buckets that have refilled: a full bucket is the same
// as no bucket.
func (a *authState) sweepLocked(now time.Time) {
	for id, b := range a.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*a.cfg.Rate >= float64(a.cfg.Burst) {
			delete(a.buckets, id)
		}
	}
}

// joinSlot decides whether id may queue a join with the given digest in
// group. It returns the earlier answer for an identical pending join
// (replay), or a refusal. The caller holds the group lock, so the decision
// and the following record cannot interleave with another join.
func (a *authState) joinSlot(group, id string, digest [sha256.Size]byte) (replay *pendingJoin, refused *RefusedError) {
	now := a.cfg.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.pending[group]
	for who, p := range g {
		if now.Sub(p.at) >= a.cfg.PendingJoinTTL {
			delete(g, who)
		}
	}
	if g != nil && len(g) == 0 {
		delete(a.pending, group) // so that idle groups cost no memory
	}
	if p, ok := g[id]; ok {
		if p.digest == digest {
			return &p, nil
		}
		retry := a.cfg.PendingJoinTTL - now.Sub(p.at)
		return nil, &RefusedError{Code: http.StatusTooManyRequests, Reason: ReasonJoinPending, RetryAfter: retry,
			Message: fmt.Sprintf("%q already has a pending join request in group %q (seq %d); wait for a commit or its Welcome before sending another", id, group, p.seq)}
	}
	if max := a.cfg.Policy.MaxMembers(group); len(g) >= max {
		return nil, &RefusedError{Code: http.StatusTooManyRequests, Reason: ReasonGroupJoinsFull, RetryAfter: time.Second,
			Message: fmt.Sprintf("group %q already has %d pending join requests (the policy's maximum group size); retry after the next commit", group, len(g))}
	}
	return nil, nil
}

func (a *authState) addPending(group, id string, p pendingJoin) {
	p.at = a.cfg.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.pending[group]
	if g == nil {
		g = map[string]pendingJoin{}
		a.pending[group] = g
	}
	g[id] = p
}

// commitAccepted settles the group's pending joins.
func (a *authState) commitAccepted(group string) {
	a.mu.Lock()
	delete(a.pending, group)
	a.mu.Unlock()
}

// checkKeyPackage verifies that a join's KeyPackage carries an X.509
// credential for id. A KeyPackage that does not parse is a 400 (err).
func (a *authState) checkKeyPackage(id string, kp []byte) (*RefusedError, error) {
	leaf, err := wire.ParseKeyPackageLeaf(kp)
	if err != nil {
		return nil, err
	}
	if leaf.CredentialType != wire.CredentialX509 {
		return &RefusedError{Code: http.StatusForbidden, Reason: ReasonKeyPackageCredentialInvalid,
			Message: fmt.Sprintf("the KeyPackage has credential type %d; this CS requires an X.509 credential (type 2) issued by the deployment CA", leaf.CredentialType)}, nil
	}
	who, err := a.cfg.Verifier.Verify(leaf.Certificates, leaf.SignatureKey)
	if err != nil {
		return &RefusedError{Code: http.StatusForbidden, Reason: ReasonKeyPackageCredentialInvalid,
			Message: "the KeyPackage's X.509 credential does not verify: " + err.Error()}, nil
	}
	if who.Name != id {
		return &RefusedError{Code: http.StatusForbidden, Reason: ReasonKeyPackageIdentityMismatch,
			Message: fmt.Sprintf("the KeyPackage's credential names %q but the client certificate names %q; join with your own KeyPackage", who.Name, id)}, nil
	}
	return nil, nil
}

type identityKey struct{}

// callerIdentity is the name Auth attached to the request ("" without Auth).
func callerIdentity(r *http.Request) string {
	id, _ := r.Context().Value(identityKey{}).(string)
	return id
}

// guard wraps an endpoint with authentication, rate limiting and the
// policy check (see Auth). Without Auth it returns h unchanged.
func (s *Server) guard(ep string, h http.HandlerFunc) http.HandlerFunc {
	if s.auth == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		group := r.PathValue("group")
		id, err := s.auth.cfg.Identify(r)
		if err != nil || id == "" {
			s.refuse(w, ep, group, "", &RefusedError{Code: http.StatusUnauthorized, Reason: ReasonUnauthenticated,
				Message: "present a client certificate issued by the deployment CA that names you (URI SAN moqsframe:NAME)"})
			return
		}
		if ok, retry := s.auth.allow(id); !ok {
			s.refuse(w, ep, group, id, &RefusedError{Code: http.StatusTooManyRequests, Reason: ReasonRateLimited, RetryAfter: retry,
				Message: fmt.Sprintf("more than %g requests per second (burst %d) from %q; slow down", s.auth.cfg.Rate, s.auth.cfg.Burst, id)})
			return
		}
		// An invalid group name is left to the handler's 400.
		if wire.ValidGroupName(group) && !s.auth.cfg.Policy.Admits(group, id) {
			s.refuse(w, ep, group, id, &RefusedError{Code: http.StatusForbidden, Reason: ReasonNotAdmitted,
				Message: fmt.Sprintf("the CS's policy does not admit %q to group %q", id, group)})
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	}
}

type refusalBody struct {
	Error    string `json:"error"` // the reason
	Message  string `json:"message"`
	Group    string `json:"group,omitempty"`
	Identity string `json:"identity,omitempty"`
}

// refuse answers a refusal, counts it and logs it (names only, no payload).
func (s *Server) refuse(w http.ResponseWriter, ep, group, id string, e *RefusedError) {
	s.metrics.refused(e.Reason)
	s.metrics.response(ep, e.Code)
	s.log.Warn("request refused", "endpoint", ep, "group", group, "identity", id, "reason", e.Reason, "code", e.Code)
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
	}
	writeJSON(w, e.Code, refusalBody{Error: e.Reason, Message: e.Message, Group: group, Identity: id})
}
