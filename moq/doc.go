// Package moq is the project's only gateway to Media over QUIC: a small
// wrapper around github.com/mengelbart/moqtransport v0.5.0 (MoQT draft-11)
// over raw QUIC (quic-go v0.53.0, ALPN "moq-00"). Moving to a newer draft
// should only touch this package.
//
// Beyond wrapping, it guards against measured v0.5.0 defects (see
// docs/moq.md): it stops incoming streams that declare an object above
// Config.MaxObjectSize before the library allocates it, holds back data so
// the library's 100-slot per-track channel can never overflow (no silent
// loss), waits for QUIC stream credit instead of failing, bounds session
// setup with a timeout, and discards datagrams (which would otherwise be able
// to tear a session down).
//
// Publishing: Session.Publish (or NewPublisher + Config.OnSubscribe) gives a
// Publisher; WriteObject fans an object out to every subscriber through a
// bounded per-subscriber queue and one QUIC stream per (group, subgroup).
// Subscribing: Session.Subscribe gives a Subscription; ReadObject returns
// objects with their group, subgroup and object IDs.
//
// Errors worth testing for are sentinels: ErrSetupTimeout,
// ErrObjectTooLarge, ErrUnknownTrack, ErrSessionClosed,
// ErrSubscriptionEnded, ErrPublisherClosed.
package moq
