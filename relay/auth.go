package relay

import (
	"crypto/tls"
	"slices"
	"sync/atomic"

	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/moq"
)

// DefaultCSPrefix is the namespace prefix reserved for the coordination
// service when Config.CSPrefix is empty. It is coord/moqforward's
// DefaultPrefix, repeated here so that the relay does not link the
// coordination code (a test keeps the two equal).
var DefaultCSPrefix = []string{"moqsframe", "cs"}

// DefaultCSIdentity is the coordination service's identity name when
// Config.CSIdentity is empty.
const DefaultCSIdentity = "cs"

// Reasons for refusing an ANNOUNCE or SUBSCRIBE: the label values of
// moq_relay_announce_refused_total and moq_relay_subscribe_refused_total.
const (
	ReasonUnauthenticated = "unauthenticated" // no verified client certificate
	ReasonReserved        = "reserved"        // the CS prefix, and this is not the CS
	ReasonOwned           = "owned"           // another identity holds an overlapping namespace
	ReasonInvalid         = "invalid"         // empty or longer than 32 elements, or from an upstream
	// ReasonNotRelay: an ANNOUNCE naming an announcer (a forwarded one)
	// from an identity not in Config.RelayIdentities.
	ReasonNotRelay = "not_relay"
)

// RefusedError is why the relay refused an ANNOUNCE or SUBSCRIBE. Its text
// is the reason phrase the peer receives, so it never names another
// identity. All reasons but ReasonInvalid match moq.ErrUnauthorized (sent
// with the "unauthorized" error code).
type RefusedError struct {
	Reason string // one of the Reason constants
	Msg    string
	owner  string // for ReasonOwned: the holder's identity, logged but not sent
}

func (e *RefusedError) Error() string { return "relay: " + e.Msg }

// Is makes errors.Is(err, moq.ErrUnauthorized) true for authorization
// refusals.
func (e *RefusedError) Is(target error) bool {
	return target == moq.ErrUnauthorized && e.Reason != ReasonInvalid
}

// authCounters count refusals by reason.
type authCounters struct {
	announceUnauthenticated, announceReserved, announceOwned, announceInvalid atomic.Uint64
	announceNotRelay                                                          atomic.Uint64
	subscribeUnauthenticated, takeovers                                       atomic.Uint64
}

func (c *authCounters) countAnnounce(reason string) {
	switch reason {
	case ReasonUnauthenticated:
		c.announceUnauthenticated.Add(1)
	case ReasonReserved:
		c.announceReserved.Add(1)
	case ReasonOwned:
		c.announceOwned.Add(1)
	case ReasonInvalid:
		c.announceInvalid.Add(1)
	case ReasonNotRelay:
		c.announceNotRelay.Add(1)
	}
}

// serverTLS returns base with client certificates requested and, when
// given, verified against v: crypto/tls checks the chain to v's anchors
// with the clientAuth usage (so the session gets VerifiedChains and a
// PeerIdentity), and VerifyConnection adds the identity checks (validity,
// digitalSignature, one moqsframe:NAME). A certificate that fails either
// fails the handshake. Clients without a certificate are still admitted:
// subscribing stays open unless Config.SubscribeNeedsCert.
func serverTLS(base *tls.Config, v *identity.Verifier) *tls.Config {
	tc := base.Clone()
	tc.ClientAuth = tls.VerifyClientCertIfGiven
	tc.ClientCAs = v.Roots()
	prev := base.VerifyConnection
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		_, err := v.VerifyCertificates(cs.PeerCertificates, nil)
		return err
	}
	return tc
}

// overlaps reports whether one namespace is a prefix of the other (or they
// are equal). With longest-prefix routing, an announcer of either would
// receive SUBSCRIBEs meant for the other's subtree: the longer one at once,
// the shorter one as soon as the longer one's announcer leaves.
func overlaps(a, b []string) bool {
	n := min(len(a), len(b))
	return slices.Equal(a[:n], b[:n])
}

// authorizeAnnounceLocked decides whether identity id may announce
// namespace under Config.TrustAnchor: a namespace belongs to the identity
// of its first announcer until that announcement is gone, and so does
// every namespace overlapping it. The same identity may announce it again
// from another session (a reconnect before the old session is gone).
// Called with r.mu held.
func (r *Relay) authorizeAnnounceLocked(id string, namespace []string) error {
	if id == "" {
		return &RefusedError{Reason: ReasonUnauthenticated,
			Msg: "announcing needs a client certificate issued by the relay's trust anchor"}
	}
	if overlaps(namespace, r.cfg.CSPrefix) && id != r.cfg.CSIdentity {
		return &RefusedError{Reason: ReasonReserved,
			Msg: "namespace overlaps the coordination service's prefix, which only its identity may announce"}
	}
	for _, a := range r.announcements {
		if a.owner != id && overlaps(a.namespace, namespace) {
			return &RefusedError{Reason: ReasonOwned, owner: a.owner,
				Msg: "namespace (or an overlapping prefix) is announced by another identity"}
		}
	}
	return nil
}
