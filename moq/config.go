package moq

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/moqsframe/moqsframe/internal/devcert"
)

// ALPN is the TLS application protocol moqtransport v0.5.0 uses for MoQ over
// raw QUIC (draft-11).
const ALPN = "moq-00"

// Defaults applied by Config for zero fields.
const (
	DefaultMaxObjectSize         = 4 << 20 // 4 MiB
	DefaultHandshakeTimeout      = 10 * time.Second
	DefaultSubscriptionQueue     = 1024
	DefaultSubscriberQueue       = 1024
	DefaultSubscriberQueueBytes  = 8 << 20 // 8 MiB, or 2 × MaxObjectSize if larger
	DefaultStreamCreditTimeout   = 10 * time.Second
	DefaultMaxIncomingUniStreams = 10000
	DefaultMaxIdleTimeout        = 30 * time.Second
	DefaultWriteTimeout          = 10 * time.Second
)

// libraryQueueCredit bounds how many objects of one subscription may sit
// inside moqtransport's RemoteTrack channel (100 slots, silently dropping on
// overflow: bug #2). Must stay below 100.
const libraryQueueCredit = 64

// maxRequestID is what we advertise and enforce. v0.5.0 servers always
// advertise 100 in SERVER_SETUP whatever InitialMaxRequestID says, so using
// the same value keeps both directions consistent.
const maxRequestID = 100

// Config configures sessions created by Dial and Listen. The zero value is
// usable; zero fields take the defaults above. A Config must not be changed
// after use.
type Config struct {
	// MaxObjectSize is the largest object payload accepted on receive and
	// allowed on send. Streams declaring more are stopped before moqtransport
	// allocates the payload.
	MaxObjectSize int

	// HandshakeTimeout bounds QUIC + MoQ SETUP. v0.5.0's Session.Run has no
	// timeout of its own.
	HandshakeTimeout time.Duration

	// SubscriptionQueue is how many received objects a Subscription buffers
	// for its reader. When full, receiving pauses (QUIC flow control pushes
	// back on the sender); nothing is dropped.
	SubscriptionQueue int

	// SubscriberQueue is how many objects a Publisher buffers per subscriber.
	SubscriberQueue int

	// SubscriberQueueBytes bounds the payload bytes a Publisher holds per
	// subscriber: queued objects plus the one its writer is sending. An
	// object that would exceed it finds the queue full (DropWhenFull
	// applies), so one slow subscriber costs at most this much memory
	// whatever the object size. Default: DefaultSubscriberQueueBytes or
	// 2 × MaxObjectSize, whichever is larger; smaller values are raised to
	// MaxObjectSize so that every allowed object fits.
	SubscriberQueueBytes int

	// DropWhenFull selects the Publisher overflow policy for a subscriber
	// whose queue is full: false (default) makes WriteObject wait up to
	// WriteTimeout and then disconnect that subscriber; true drops the object
	// for that subscriber only and counts it (relay policy: a slow subscriber
	// never stalls the others).
	DropWhenFull bool

	// MaxDrops, with DropWhenFull, disconnects a subscriber (SUBSCRIBE_DONE
	// "too far behind") after this many dropped objects. 0 = never.
	MaxDrops int

	// WriteTimeout bounds how long WriteObject waits for a full subscriber
	// queue when DropWhenFull is false.
	WriteTimeout time.Duration

	// StreamCreditTimeout bounds the wait for the peer to grant a new
	// unidirectional stream (v0.5.0 fails at once instead: bug #4).
	StreamCreditTimeout time.Duration

	// MaxIncomingUniStreams is the QUIC limit of concurrent incoming
	// unidirectional streams (one per subgroup).
	MaxIncomingUniStreams int64

	// MaxIdleTimeout is the QUIC idle timeout. Keep-alives are sent at half
	// of it.
	MaxIdleTimeout time.Duration

	// InsecureSkipVerify disables server certificate checks in Dial. Dev and
	// tests only.
	InsecureSkipVerify bool

	// TLSConfig, if set, is used by Dial (cloned; ALPN is forced to moq-00).
	// Its Certificates are presented when the server asks for a client
	// certificate (mTLS, see identity.ClientTLS) and its RootCAs verify the
	// server.
	TLSConfig *tls.Config

	// OnAnnounce is called (on the session's control goroutine: do not
	// block) when the peer ANNOUNCEs a namespace. Return nil to accept. A nil
	// OnAnnounce rejects all announcements. An error matching
	// ErrUnauthorized is sent as ANNOUNCE_ERROR code 0x1 (unauthorized),
	// others as 0x0; the error text is the reason phrase the peer sees.
	OnAnnounce func(s *Session, namespace []string) error

	// OnRelayedAnnounce, if set, is called instead of OnAnnounce for an
	// ANNOUNCE that carries the AnnouncerParameter (sent by AnnounceFor):
	// announcer is the identity the forwarding relay says it authenticated.
	// Trust it only from peers known to be relays.
	OnRelayedAnnounce func(s *Session, namespace []string, announcer string) error

	// OnUnannounce is called (do not block) when the peer sends UNANNOUNCE
	// for a namespace it announced. Optional. (A v0.5.0 peer never sends
	// it: its Unannounce is broken, bug #6.)
	OnUnannounce func(s *Session, namespace []string)

	// OnSubscribe is called (do not block) for an incoming SUBSCRIBE that no
	// Publisher registered with Session.Publish matches. Return the Publisher
	// that should serve it (it may be shared between sessions, as in a relay)
	// or an error (ErrUnknownTrack to reject with "track does not exist",
	// ErrUnauthorized with "unauthorized").
	OnSubscribe func(s *Session, namespace []string, track string) (*Publisher, error)

	// Logger receives operational logs. Payloads and tokens are never logged.
	Logger *slog.Logger
}

func (c *Config) withDefaults() *Config {
	var out Config
	if c != nil {
		out = *c
	}
	if out.MaxObjectSize <= 0 {
		out.MaxObjectSize = DefaultMaxObjectSize
	}
	if out.HandshakeTimeout <= 0 {
		out.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if out.SubscriptionQueue <= 0 {
		out.SubscriptionQueue = DefaultSubscriptionQueue
	}
	if out.SubscriberQueue <= 0 {
		out.SubscriberQueue = DefaultSubscriberQueue
	}
	if out.SubscriberQueueBytes <= 0 {
		out.SubscriberQueueBytes = max(DefaultSubscriberQueueBytes, 2*out.MaxObjectSize)
	}
	out.SubscriberQueueBytes = max(out.SubscriberQueueBytes, out.MaxObjectSize)
	if out.StreamCreditTimeout <= 0 {
		out.StreamCreditTimeout = DefaultStreamCreditTimeout
	}
	if out.MaxIncomingUniStreams <= 0 {
		out.MaxIncomingUniStreams = DefaultMaxIncomingUniStreams
	}
	if out.MaxIdleTimeout <= 0 {
		out.MaxIdleTimeout = DefaultMaxIdleTimeout
	}
	if out.WriteTimeout <= 0 {
		out.WriteTimeout = DefaultWriteTimeout
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return &out
}

// DevTLSConfig returns a server TLS config with a fresh self-signed
// certificate for the given host names / IPs (e.g. "localhost",
// "127.0.0.1"), valid for a week. For tests and demos only: clients must use
// InsecureSkipVerify.
func DevTLSConfig(hosts ...string) (*tls.Config, error) {
	cert, _, _, err := devcert.New(hosts, 7*24*time.Hour)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{ALPN},
		MinVersion:   tls.VersionTLS13,
	}, nil
}
