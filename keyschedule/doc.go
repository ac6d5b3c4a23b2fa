// Package keyschedule turns MLS epochs into SFrame keys, as RFC 9605 §5.2
// describes, with lock-free epoch roll-over.
//
// For each MLS epoch the application installs an [Epoch]: the epoch number,
// base_key = MLS-Exporter("SFrame 1.0 Base Key", "", AEAD.Nk), the group
// size and the member's own leaf index ([ExportEpoch] builds it from any
// [Exporter]). Every member then has its own KIDs,
//
//	KID = (context << (S+E)) + (index << E) + (epoch mod 2^E)
//
// with S the index bits of the group and E the epoch bits ([Layout]), and
// per-KID keys derived on demand from base_key.
//
// A [Schedule] seals with the member's keys for the current send epoch
// ([Schedule.Seal], or a [Stream] per context value) and opens the other
// members' ciphertexts ([Schedule.Open]), picking the epoch from the KID's
// low E bits. Both paths read an immutable snapshot through an atomic
// pointer, so [Schedule.Install] never blocks or fails them. Superseded
// epochs stay decryptable for a grace period, and are removed at once when a
// new epoch takes their slot (same low E bits). Senders move to a fresh
// context value before a key reaches its usage limit, and can hold back on a
// new epoch until a quorum of members acknowledges it
// ([WithCoordinatedRollover]).
//
// The package knows nothing of any MLS library or transport. See
// docs/keyschedule.md for the design and measurements.
package keyschedule
