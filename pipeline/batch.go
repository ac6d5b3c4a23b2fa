package pipeline

import "time"

// Object is one MoQ object moving through a batch or a stage.
type Object struct {
	Track      *Track
	GroupID    uint64
	SubgroupID uint64 // carried along, not authenticated (MoQ may regroup subgroups)
	ObjectID   uint64
	// Payload is the input: plaintext to seal, or SFrame ciphertext to open.
	Payload []byte
	// Out receives the output, appended to Out[:0]. Give it capacity for
	// the result (len(Payload) plus sframe overhead when sealing) to avoid
	// allocating; it must not overlap Payload unless it is Payload[:0].
	Out []byte
	// Err is the object's result: nil, or why it was dropped.
	Err error
	// Arrived is when the caller received the object. The pipeline only
	// carries it, so latency can be measured where the object leaves.
	Arrived time.Time
}

// A Batcher seals or opens batches of objects in the calling goroutine. It
// keeps scratch memory between calls, so it allocates nothing in steady
// state; use one Batcher per goroutine.
type Batcher struct {
	meta []byte
}

// Seal seals each object's Payload into its Out with its track's Sealer,
// binding the object's MoQ identity as metadata. It sets each object's Err
// and returns how many failed.
func (b *Batcher) Seal(objs []Object) (failed int) {
	for i := range objs {
		o := &objs[i]
		if o.Err = b.setMeta(o); o.Err == nil {
			o.Out, o.Err = o.Track.Sealer.Seal(o.Out[:0], b.meta, o.Payload)
		}
		if o.Err != nil {
			o.Out = o.Out[:0]
			failed++
		}
	}
	return failed
}

// Open opens each object's Payload into its Out with its track's Opener,
// checking that the object was sealed with this MoQ identity. It sets each
// object's Err and returns how many failed.
func (b *Batcher) Open(objs []Object) (failed int) {
	for i := range objs {
		o := &objs[i]
		if o.Err = b.setMeta(o); o.Err == nil {
			o.Out, o.Err = o.Track.Opener.Open(o.Out[:0], b.meta, o.Payload)
		}
		if o.Err != nil {
			o.Out = o.Out[:0]
			failed++
		}
	}
	return failed
}

func (b *Batcher) setMeta(o *Object) (err error) {
	b.meta, err = o.Track.AppendMetadata(b.meta[:0], o.GroupID, o.ObjectID)
	return err
}
