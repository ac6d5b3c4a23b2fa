package moq

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is.
var (
	// ErrSetupTimeout: the MoQ SETUP exchange did not finish within
	// Config.HandshakeTimeout. The peer is probably not a draft-11 MoQ
	// endpoint (wrong ALPN/draft) or is overloaded; check the address and
	// that both ends speak draft-11 over ALPN "moq-00".
	ErrSetupTimeout = errors.New("moq: session setup timed out (is the peer a draft-11 MoQ endpoint on ALPN moq-00?)")

	// ErrObjectTooLarge: an object's payload exceeds Config.MaxObjectSize.
	// On receive, the stream carrying it was stopped; on send, nothing was
	// written. Raise MaxObjectSize on both ends if such objects are legitimate.
	ErrObjectTooLarge = errors.New("moq: object larger than the configured maximum")

	// ErrUnknownTrack: no publisher serves the requested (namespace, track).
	// Publish/Announce it first, or check the names.
	ErrUnknownTrack = errors.New("moq: unknown track")

	// ErrSessionClosed: the session (QUIC connection) is closed. Dial again.
	ErrSessionClosed = errors.New("moq: session closed")

	// ErrSubscriptionEnded: the publisher ended the subscription
	// (SUBSCRIBE_DONE) or it was closed locally. Subscribe again if needed.
	ErrSubscriptionEnded = errors.New("moq: subscription ended")

	// ErrPublisherClosed: WriteObject on a closed Publisher.
	ErrPublisherClosed = errors.New("moq: publisher closed")

	// ErrUnauthorized: the peer refused an ANNOUNCE or SUBSCRIBE as
	// unauthorized (error code 0x1), e.g. a relay that requires a client
	// certificate or reserves the namespace for another identity. The error
	// carries the peer's reason. Returned by OnAnnounce/OnSubscribe (or an
	// error matching it), it makes the refusal use that code.
	ErrUnauthorized = errors.New("moq: unauthorized")
)

// ObjectTooLargeError carries the sizes; it matches ErrObjectTooLarge.
type ObjectTooLargeError struct {
	Size, Max uint64
}

func (e *ObjectTooLargeError) Error() string {
	return fmt.Sprintf("moq: object payload of %d bytes exceeds the maximum of %d bytes (raise Config.MaxObjectSize on both ends if legitimate)", e.Size, e.Max)
}

// Is makes errors.Is(err, ErrObjectTooLarge) true.
func (e *ObjectTooLargeError) Is(target error) bool { return target == ErrObjectTooLarge }
