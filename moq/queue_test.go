package moq

import (
	"math/rand/v2"
	"testing"
)

// queuedPayload measures what sits in sub's queue by draining and
// refilling it, independently of the subscriber's own byte counter.
func queuedPayload(sub *subscriber) (objects, bytes int) {
	var held []Object
	for {
		select {
		case o := <-sub.queue:
			held = append(held, o)
			continue
		default:
		}
		break
	}
	for _, o := range held {
		sub.queue <- o
		bytes += len(o.Payload)
	}
	return len(held), bytes
}

// The per-subscriber queue is bounded in bytes as well as objects: objects
// of random sizes (up to MaxObjectSize) are written while a stand-in writer
// takes some out; after every step the queue holds at most
// SubscriberQueueBytes (measured by draining it), and an object is dropped
// exactly when a model of the two bounds says the queue is full.
func TestSubscriberQueueByteBound(t *testing.T) {
	const (
		maxObject  = 4000
		queueBytes = 10000
		queueObjs  = 8
	)
	for _, seed := range []uint64{1, 2, 3} {
		p := NewPublisher([]string{"ns"}, "t", &Config{
			MaxObjectSize: maxObject, SubscriberQueue: queueObjs, SubscriberQueueBytes: queueBytes,
			DropWhenFull: true,
		})
		sub, err := p.attach(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 0))
		var model []int // payload sizes the queue should hold, in order
		modelBytes := 0
		var wantDropped, wantByBytes uint64
		sawByteFull, sawCountFull := false, false
		for step := 0; step < 5000; step++ {
			if rng.IntN(3) > 0 {
				size := 1 + rng.IntN(maxObject)
				switch {
				case modelBytes+size > queueBytes:
					wantDropped++
					wantByBytes++
					sawByteFull = true
				case len(model) == queueObjs:
					wantDropped++
					sawCountFull = true
				default:
					model = append(model, size)
					modelBytes += size
				}
				if err := p.WriteObject(0, 0, uint64(step), make([]byte, size)); err != nil {
					t.Fatal(err)
				}
			} else if len(model) > 0 {
				// The writer: take the oldest object, send it, release it.
				o := <-sub.queue
				if len(o.Payload) != model[0] {
					t.Fatalf("seed %d step %d: dequeued %d bytes, model says %d", seed, step, len(o.Payload), model[0])
				}
				model = model[1:]
				modelBytes -= len(o.Payload)
				sub.release(int64(len(o.Payload)))
			}
			n, b := queuedPayload(sub)
			if b > queueBytes {
				t.Fatalf("seed %d step %d: %d bytes queued, bound %d", seed, step, b, queueBytes)
			}
			if n != len(model) || b != modelBytes {
				t.Fatalf("seed %d step %d: queue holds %d objects / %d bytes, model %d / %d", seed, step, n, b, len(model), modelBytes)
			}
			if got := sub.queuedBytes.Load(); got != int64(b) {
				t.Fatalf("seed %d step %d: counter says %d bytes, queue holds %d", seed, step, got, b)
			}
		}
		st := p.Stats()
		if st.Dropped != wantDropped || st.DroppedBytes != wantByBytes {
			t.Fatalf("seed %d: dropped %d (%d by bytes), want %d (%d)", seed, st.Dropped, st.DroppedBytes, wantDropped, wantByBytes)
		}
		if st.PeakQueuedBytes > queueBytes || st.PeakQueuedBytes <= queueBytes-maxObject {
			t.Fatalf("seed %d: peak %d bytes, want in (%d, %d]", seed, st.PeakQueuedBytes, queueBytes-maxObject, queueBytes)
		}
		if !sawByteFull || !sawCountFull {
			t.Fatalf("seed %d: the walk did not exercise both bounds (bytes %v, count %v)", seed, sawByteFull, sawCountFull)
		}
		t.Logf("seed %d: %d dropped (%d by the byte bound), peak %d of %d bytes", seed, st.Dropped, st.DroppedBytes, st.PeakQueuedBytes, queueBytes)
	}
}

// Values below MaxObjectSize are raised so every allowed object fits; the
// default scales with MaxObjectSize.
func TestSubscriberQueueBytesDefaults(t *testing.T) {
	for _, c := range []struct{ set, maxObj, want int }{
		{0, 0, DefaultSubscriberQueueBytes},
		{0, 16 << 20, 32 << 20},
		{1000, 4000, 4000},
		{1 << 20, 4000, 1 << 20},
	} {
		got := (&Config{SubscriberQueueBytes: c.set, MaxObjectSize: c.maxObj}).withDefaults().SubscriberQueueBytes
		if got != c.want {
			t.Errorf("SubscriberQueueBytes %d, MaxObjectSize %d: got %d, want %d", c.set, c.maxObj, got, c.want)
		}
	}
}

// Forwarding an object to a subscriber queue (byte accounting included)
// allocates nothing.
func TestForwardEnqueueAllocs(t *testing.T) {
	p := NewPublisher([]string{"ns"}, "t", &Config{DropWhenFull: true})
	sub, err := p.attach(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := Object{Payload: make([]byte, 1200)}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := p.Forward(o); err != nil {
			t.Fatal(err)
		}
		got := <-sub.queue
		sub.release(int64(len(got.Payload)))
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per forwarded object", allocs)
	}
}
