// Package pipeline seals and opens MoQ objects with SFrame in batches, between
// media encoders and MoQ publishing, without allocating per object.
//
// Each object's SFrame metadata is its MoQ identity: track namespace, track
// name, group ID and object ID (see [Track.AppendMetadata]). A relay that
// moves an object to another group, object ID or track therefore breaks its
// authentication tag.
//
// [Batcher] processes a batch in the calling goroutine. [Stage] spreads
// objects over worker goroutines, keeping each track's order, with bounded
// queues and counters.
package pipeline
