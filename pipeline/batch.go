package pipeline

import (
	"time"

	"github.com/moqsframe/moqsframe/sframe"
)

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
	meta    []byte
	metaEnd []int
	items   []sframe.SealItem
	opens   []sframe.OpenItem
}

// BatchSealer is a Sealer that seals many objects in one call, such as
// *sframe.Sender, whose AES-GCM suites use a multi-buffer kernel.
type BatchSealer interface {
	Sealer
	SealBatch(items []sframe.SealItem) (failed int)
}

// BatchOpener is an Opener that opens many objects in one call, such as
// *sframe.Receiver, whose AES-GCM suites use a multi-buffer kernel.
type BatchOpener interface {
	Opener
	OpenBatch(items []sframe.OpenItem) (failed int)
}

// Seal seals each object's Payload into its Out with its track's Sealer,
// binding the object's MoQ identity as metadata. Consecutive objects of one
// BatchSealer are sealed in one call. It sets each object's Err and returns
// how many failed.
func (b *Batcher) Seal(objs []Object) (failed int) {
	for len(objs) > 0 {
		n := 1
		bs, ok := objs[0].Track.Sealer.(BatchSealer)
		if ok {
			for n < len(objs) && objs[n].Track.Sealer == objs[0].Track.Sealer {
				n++
			}
		}
		if ok && n > 1 {
			failed += b.sealRun(bs, objs[:n])
		} else {
			failed += b.sealOne(&objs[0])
		}
		objs = objs[n:]
	}
	return failed
}

func (b *Batcher) sealOne(o *Object) int {
	if o.Err = b.setMeta(o); o.Err == nil {
		o.Out, o.Err = o.Track.Sealer.Seal(o.Out[:0], b.meta, o.Payload)
	}
	if o.Err != nil {
		o.Out = o.Out[:0]
		return 1
	}
	return 0
}

// sealRun seals objects sharing one BatchSealer in one call.
func (b *Batcher) sealRun(bs BatchSealer, objs []Object) (failed int) {
	b.buildMeta(objs)
	b.items = b.items[:0]
	start := 0
	for i := range objs {
		// Objects that already failed get no item; their Err stays.
		if objs[i].Err == nil {
			b.items = append(b.items, sframe.SealItem{Metadata: b.meta[start:b.metaEnd[i]], Plaintext: objs[i].Payload, Out: objs[i].Out})
		}
		start = b.metaEnd[i]
	}
	bs.SealBatch(b.items)
	j := 0
	for i := range objs {
		o := &objs[i]
		if o.Err == nil {
			o.Out, o.Err = b.items[j].Out, b.items[j].Err
			j++
		}
		if o.Err != nil {
			o.Out = o.Out[:0]
			failed++
		}
	}
	clear(b.items) // drop references to payloads
	return failed
}

// Open opens each object's Payload into its Out with its track's Opener,
// checking that the object was sealed with this MoQ identity. Consecutive
// objects of one BatchOpener are opened in one call; one that fails
// authentication fails alone. It sets each object's Err and returns how
// many failed.
func (b *Batcher) Open(objs []Object) (failed int) {
	for len(objs) > 0 {
		n := 1
		bo, ok := objs[0].Track.Opener.(BatchOpener)
		if ok {
			for n < len(objs) && objs[n].Track.Opener == objs[0].Track.Opener {
				n++
			}
		}
		if ok && n > 1 {
			failed += b.openRun(bo, objs[:n])
		} else {
			failed += b.openOne(&objs[0])
		}
		objs = objs[n:]
	}
	return failed
}

func (b *Batcher) openOne(o *Object) int {
	if o.Err = b.setMeta(o); o.Err == nil {
		o.Out, o.Err = o.Track.Opener.Open(o.Out[:0], b.meta, o.Payload)
	}
	if o.Err != nil {
		o.Out = o.Out[:0]
		return 1
	}
	return 0
}

// openRun opens objects sharing one BatchOpener in one call.
func (b *Batcher) openRun(bo BatchOpener, objs []Object) (failed int) {
	b.buildMeta(objs)
	b.opens = b.opens[:0]
	start := 0
	for i := range objs {
		if objs[i].Err == nil {
			b.opens = append(b.opens, sframe.OpenItem{Metadata: b.meta[start:b.metaEnd[i]], Ciphertext: objs[i].Payload, Out: objs[i].Out})
		}
		start = b.metaEnd[i]
	}
	bo.OpenBatch(b.opens)
	j := 0
	for i := range objs {
		o := &objs[i]
		if o.Err == nil {
			o.Out, o.Err = b.opens[j].Out, b.opens[j].Err
			j++
		}
		if o.Err != nil {
			o.Out = o.Out[:0]
			failed++
		}
	}
	clear(b.opens) // drop references to payloads
	return failed
}

// buildMeta lays out every object's metadata in b.meta, object i's ending
// at b.metaEnd[i]; an object whose identity cannot be encoded gets Err.
func (b *Batcher) buildMeta(objs []Object) {
	b.meta, b.metaEnd = b.meta[:0], b.metaEnd[:0]
	for i := range objs {
		b.meta, objs[i].Err = objs[i].Track.AppendMetadata(b.meta, objs[i].GroupID, objs[i].ObjectID)
		b.metaEnd = append(b.metaEnd, len(b.meta))
	}
}

func (b *Batcher) setMeta(o *Object) (err error) {
	b.meta, err = o.Track.AppendMetadata(b.meta[:0], o.GroupID, o.ObjectID)
	return err
}
