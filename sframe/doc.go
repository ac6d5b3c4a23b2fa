// Package sframe implements SFrame, the end-to-end media encryption of
// RFC 9605.
//
// An SFrame ciphertext is a compact header carrying a key ID (KID) and a
// counter (CTR), followed by the AEAD encryption of the media payload. The
// header and caller-supplied metadata are authenticated as associated data.
//
// A [Sender] owns one KID's key and its counter: it is the only way to
// encrypt, so a (key, nonce) pair is never used twice. A [Receiver] holds the
// keys it may decrypt with, indexed by KID, and rejects replayed counters.
// Both are safe for concurrent use and allocate nothing per object in steady
// state when the caller's dst has room.
//
// The package knows nothing of the transport (MoQ, RTP) or of key management
// (MLS): callers bind transport identity through the metadata argument and
// provision base keys themselves.
package sframe
