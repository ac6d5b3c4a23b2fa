package pipeline

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/internal/race"
	"github.com/moqsframe/moqsframe/sframe"
)

func TestMetadataEncoding(t *testing.T) {
	tr, err := NewTrack([]string{"example.org", "room1"}, "video")
	if err != nil {
		t.Fatal(err)
	}
	md, err := tr.AppendMetadata(nil, 42, 300)
	if err != nil {
		t.Fatal(err)
	}
	// 02 | 0b "example.org" | 05 "room1" | 05 "video" | 2a | 41 2c
	want := "02" + "0b" + hex.EncodeToString([]byte("example.org")) + "05" + hex.EncodeToString([]byte("room1")) +
		"05" + hex.EncodeToString([]byte("video")) + "2a" + "412c"
	if got := hex.EncodeToString(md); got != want {
		t.Fatalf("metadata\n got %s\nwant %s", got, want)
	}
	if _, err := tr.AppendMetadata(nil, MaxVarint+1, 0); !errors.Is(err, ErrIDTooLarge) {
		t.Fatalf("huge group: %v", err)
	}
}

func TestVarint(t *testing.T) {
	for _, tc := range []struct {
		v    uint64
		want string
	}{
		{0, "00"}, {63, "3f"}, {64, "4040"}, {16383, "7fff"}, {16384, "80004000"},
		{1<<30 - 1, "bfffffff"}, {1 << 30, "c000000040000000"}, {MaxVarint, "ffffffffffffffff"},
		{151288809941952652, "c2197c5eff14e88c"}, // RFC 9000 Appendix A.1
	} {
		if got := hex.EncodeToString(AppendVarint(nil, tc.v)); got != tc.want {
			t.Errorf("varint(%d) = %s, want %s", tc.v, got, tc.want)
		}
	}
}

func TestNewTrackLimits(t *testing.T) {
	if _, err := NewTrack(nil, "x"); !errors.Is(err, ErrInvalidTrack) {
		t.Error("empty namespace accepted")
	}
	if _, err := NewTrack(make([]string, 33), "x"); !errors.Is(err, ErrInvalidTrack) {
		t.Error("33 fields accepted")
	}
	if _, err := NewTrack([]string{string(make([]byte, 4000))}, string(make([]byte, 97))); !errors.Is(err, ErrInvalidTrack) {
		t.Error("4097-byte name accepted")
	}
	if _, err := NewTrack(make([]string, 32), string(make([]byte, 4096))); err != nil {
		t.Errorf("limits exactly: %v", err)
	}
}

// keyedTracks returns a sealing and an opening view of the same tracks,
// sharing one base key per track.
func keyedTracks(t testing.TB, n int) (seal, open []*Track) {
	t.Helper()
	for i := range n {
		base := make([]byte, 16)
		rand.Read(base)
		st, _ := NewTrack([]string{"example.org", "room1"}, fmt.Sprintf("track%d", i))
		ot, _ := NewTrack([]string{"example.org", "room1"}, fmt.Sprintf("track%d", i))
		s, err := sframe.NewSender(sframe.AES128GCMSHA256_128, uint64(i), base)
		if err != nil {
			t.Fatal(err)
		}
		r := sframe.NewReceiver()
		if err := r.AddKey(sframe.AES128GCMSHA256_128, uint64(i), base); err != nil {
			t.Fatal(err)
		}
		st.Sealer, ot.Opener = s, r
		seal, open = append(seal, st), append(open, ot)
	}
	return seal, open
}

func TestBatchRoundTrip(t *testing.T) {
	seal, open := keyedTracks(t, 3)
	trackOf := func(i int) int { return (i / 4) % 3 } // runs of 4 for SealBatch, and run ends
	payload := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, i*40) }
	var b Batcher
	var objs []Object
	for i := range 30 {
		objs = append(objs, Object{Track: seal[trackOf(i)], GroupID: uint64(i / 10), ObjectID: uint64(i % 10), Payload: payload(i)})
	}
	objs[7].GroupID = MaxVarint + 1 // fails inside a run; its neighbours must not
	if failed := b.Seal(objs); failed != 1 || !errors.Is(objs[7].Err, ErrIDTooLarge) {
		t.Fatalf("%d failed, object 7: %v", failed, objs[7].Err)
	}
	var opened []Object
	var index []int
	for i := range objs {
		if i == 7 {
			continue
		}
		if len(objs[i].Payload) > 16 && bytes.Contains(objs[i].Out, objs[i].Payload) {
			t.Fatalf("object %d: plaintext visible in ciphertext", i)
		}
		opened = append(opened, Object{Track: open[trackOf(i)], GroupID: objs[i].GroupID, ObjectID: objs[i].ObjectID, Payload: objs[i].Out})
		index = append(index, i)
	}
	// Object 9 (inside a run of one Receiver) is tampered with and object
	// 13 claims another object ID: each fails alone, the rest open.
	opened[8].Payload[len(opened[8].Payload)-1] ^= 1
	opened[12].ObjectID++
	if failed := b.Open(opened); failed != 2 {
		t.Fatalf("%d failed to open, want 2", failed)
	}
	for j, o := range opened {
		if j == 8 || j == 12 {
			if !errors.Is(o.Err, sframe.ErrAuthentication) || len(o.Out) != 0 {
				t.Fatalf("object %d: err %v, %d bytes out", index[j], o.Err, len(o.Out))
			}
			continue
		}
		if o.Err != nil || !bytes.Equal(o.Out, payload(index[j])) {
			t.Fatalf("object %d differs (err %v)", index[j], o.Err)
		}
	}
}

// A relay that moves an object to another group, object ID or track, or
// renames the track, breaks the tag.
func TestRelocatedObjectsFailAuthentication(t *testing.T) {
	base := make([]byte, 16)
	rand.Read(base)
	s, _ := sframe.NewSender(sframe.AES128GCMSHA256_128, 1, base)
	video, _ := NewTrack([]string{"example.org", "room1"}, "video")
	video.Sealer = s
	var b Batcher
	obj := []Object{{Track: video, GroupID: 5, ObjectID: 3, Payload: []byte("keyframe")}}
	b.Seal(obj)
	ct := obj[0].Out

	receiverTrack := func(ns []string, name string) *Track {
		r := sframe.NewReceiver()
		r.AddKey(sframe.AES128GCMSHA256_128, 1, base)
		tr, _ := NewTrack(ns, name)
		tr.Opener = r
		return tr
	}
	ns := []string{"example.org", "room1"}
	for _, tc := range []struct {
		name          string
		track         *Track
		group, object uint64
		wantErr       error
	}{
		{"original", receiverTrack(ns, "video"), 5, 3, nil},
		{"other group", receiverTrack(ns, "video"), 6, 3, sframe.ErrAuthentication},
		{"other object", receiverTrack(ns, "video"), 5, 4, sframe.ErrAuthentication},
		{"other track", receiverTrack(ns, "audio"), 5, 3, sframe.ErrAuthentication},
		{"other namespace", receiverTrack([]string{"example.org", "room2"}, "video"), 5, 3, sframe.ErrAuthentication},
		{"namespace split differently", receiverTrack([]string{"example.org/room1"}, "video"), 5, 3, sframe.ErrAuthentication},
	} {
		o := []Object{{Track: tc.track, GroupID: tc.group, ObjectID: tc.object, Payload: ct}}
		b.Open(o)
		if !errors.Is(o[0].Err, tc.wantErr) && !(tc.wantErr == nil && o[0].Err == nil) {
			t.Errorf("%s: err %v, want %v", tc.name, o[0].Err, tc.wantErr)
		}
	}
}

func TestBatcherZeroAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	// Receivers without a replay window, so the same objects open on
	// every run.
	var seal, open []*Track
	for i := range 4 {
		base := bytes.Repeat([]byte{byte(i)}, 16)
		st, _ := NewTrack([]string{"example.org", "room1"}, fmt.Sprint("track", i))
		ot, _ := NewTrack([]string{"example.org", "room1"}, fmt.Sprint("track", i))
		st.Sealer, _ = sframe.NewSender(sframe.AES128GCMSHA256_128, uint64(i), base)
		r := sframe.NewReceiver(sframe.WithReplayWindow(0))
		r.AddKey(sframe.AES128GCMSHA256_128, uint64(i), base)
		ot.Opener = r
		seal, open = append(seal, st), append(open, ot)
	}
	objs := make([]Object, 32)
	for i := range objs {
		// Runs of 8 objects per track take the multi-buffer path.
		objs[i] = Object{Track: seal[i/8], ObjectID: uint64(i), Payload: make([]byte, 1200), Out: make([]byte, 0, 1300)}
	}
	var b Batcher
	b.Seal(objs)
	if a := testing.AllocsPerRun(100, func() { b.Seal(objs) }); a != 0 {
		t.Fatalf("%v allocs per batch of 32", a)
	}
	cts := make([]Object, len(objs))
	for i, o := range objs {
		cts[i] = Object{Track: open[i/8], ObjectID: o.ObjectID, Payload: o.Out, Out: make([]byte, 0, 1300)}
	}
	if failed := b.Open(cts); failed != 0 {
		t.Fatalf("%d failed to open: %v", failed, cts[0].Err)
	}
	if a := testing.AllocsPerRun(100, func() { b.Open(cts) }); a != 0 {
		t.Fatalf("%v allocs per opened batch of 32", a)
	}
}

// Objects of each track come out in submission order, across 4 workers and
// 16 tracks submitted from 4 goroutines, and every object is accounted for.
func TestStageKeepsTrackOrder(t *testing.T) {
	seal, open := keyedTracks(t, 16)
	const perTrack = 300
	var mu sync.Mutex
	sealed := map[*Track][][]byte{}
	idx := map[*Track]int{}
	for i, tr := range seal {
		idx[tr] = i
	}
	ss := NewSealStage(Config{Workers: 4, QueueLen: 8, MaxBatch: 8}, func(batch []Object) {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range batch {
			if o.Err != nil {
				t.Error(o.Err)
			}
			if want := uint64(len(sealed[o.Track])); o.ObjectID != want {
				t.Errorf("%s: object %d emitted at position %d", o.Track, o.ObjectID, want)
			}
			sealed[o.Track] = append(sealed[o.Track], bytes.Clone(o.Out))
		}
	})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() { // each goroutine owns 4 tracks, so per-track submission order is defined
			defer wg.Done()
			for obj := range perTrack {
				for _, tr := range seal[g*4 : g*4+4] {
					if err := ss.Submit(context.Background(), Object{Track: tr, ObjectID: uint64(obj), Payload: []byte(fmt.Sprint(tr, obj))}); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	ss.Close()
	if st := ss.Stats(); st.Objects != 16*perTrack || st.Errors != 0 || st.Drops != 0 {
		t.Fatalf("seal stats %+v", st)
	}
	// Open everything again through an open stage, tampering with one.
	var opened sync.Map
	os := NewOpenStage(Config{Workers: 2}, func(batch []Object) {
		for _, o := range batch {
			if o.Err == nil {
				opened.Store(fmt.Sprint(o.Track, o.ObjectID), string(o.Out))
			}
		}
	})
	for tr, cts := range sealed {
		for obj, ct := range cts {
			if tr == seal[3] && obj == 7 {
				ct[len(ct)-1] ^= 1
			}
			os.Submit(context.Background(), Object{Track: open[idx[tr]], ObjectID: uint64(obj), Payload: ct})
		}
	}
	os.Close()
	if st := os.Stats(); st.Objects != 16*perTrack-1 || st.AuthFailed != 1 || st.Errors != 1 {
		t.Fatalf("open stats %+v", st)
	}
	v, _ := opened.Load(fmt.Sprint(open[5], 99))
	if v != fmt.Sprint(seal[5], 99) {
		t.Fatalf("opened %q", v)
	}
}

// A stalled consumer fills the bounded queue: TrySubmit then drops and
// counts, Submit waits and gives up with its context.
func TestStageBackpressure(t *testing.T) {
	seal, _ := keyedTracks(t, 1)
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	ss := NewSealStage(Config{Workers: 1, QueueLen: 4, MaxBatch: 1}, func([]Object) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	})
	// TrySubmit never processes on the caller: the worker takes it.
	if err := ss.TrySubmit(Object{Track: seal[0], Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	<-entered // the worker now holds one object in emit; the queue is empty
	accepted := 1
	for range 20 {
		if ss.TrySubmit(Object{Track: seal[0], Payload: []byte("x")}) == nil {
			accepted++
		}
	}
	if accepted != 5 {
		t.Fatalf("accepted %d, want 1 in emit + 4 queued", accepted)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := ss.Submit(ctx, Object{Track: seal[0], Payload: []byte("x")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Submit on a full queue: %v", err)
	}
	close(release)
	ss.Close()
	st := ss.Stats()
	if st.Objects != 5 || st.Drops != 16+1 {
		t.Fatalf("stats %+v, accepted %d", st, accepted)
	}
	if err := ss.Submit(context.Background(), Object{Track: seal[0]}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// Producers blocked by backpressure allocate nothing either (with a
// context that cannot be cancelled).
func TestStageSteadyStateAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	seal, _ := keyedTracks(t, 2)
	ss := NewSealStage(Config{Workers: 2, QueueLen: 4, MaxBatch: 4}, func([]Object) {})
	defer ss.Close()
	// One output buffer per track: a track's objects are sealed one after
	// another by its worker, never concurrently.
	payload, outs := make([]byte, 1200), [][]byte{make([]byte, 0, 1300), make([]byte, 0, 1300)}
	ctx := context.Background()
	i := 0
	if a := testing.AllocsPerRun(2000, func() {
		ss.Submit(ctx, Object{Track: seal[i%2], Payload: payload, Out: outs[i%2]})
		i++
	}); a != 0 {
		t.Fatalf("%v allocs per submitted object", a)
	}
}

// SubmitBatch keeps per-track order and loses nothing, across a queue
// smaller than the batch (so it must wait mid-batch).
func TestStageSubmitBatch(t *testing.T) {
	seal, _ := keyedTracks(t, 5)
	var mu sync.Mutex
	next := map[*Track]uint64{}
	ss := NewSealStage(Config{Workers: 3, QueueLen: 3, MaxBatch: 2}, func(batch []Object) {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range batch {
			if o.Err != nil || o.ObjectID != next[o.Track] {
				t.Errorf("%s: object %d (err %v), want %d", o.Track, o.ObjectID, o.Err, next[o.Track])
			}
			next[o.Track]++
		}
	})
	ids := map[*Track]uint64{}
	for range 40 {
		batch := make([]Object, 17)
		for i := range batch {
			tr := seal[(i*7)%5]
			batch[i] = Object{Track: tr, ObjectID: ids[tr], Payload: []byte("x")}
			ids[tr]++
		}
		if err := ss.SubmitBatch(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	ss.Close()
	if st := ss.Stats(); st.Objects != 40*17 || st.Drops != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := ss.SubmitBatch(context.Background(), []Object{{Track: seal[0]}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// A submitter that finds its shard idle processes the object itself
// (caller-runs): emit has run, on this goroutine, when Submit returns. One
// whose shard is busy queues it for the worker instead.
func TestStageCallerRuns(t *testing.T) {
	seal, _ := keyedTracks(t, 1)
	var emitted atomic.Int64
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	ss := NewSealStage(Config{Workers: 1}, func(batch []Object) {
		if batch[0].ObjectID == 100 { // the worker's object: hold the shard
			entered <- struct{}{}
			<-release
		}
		emitted.Add(int64(len(batch)))
	})
	if err := ss.Submit(context.Background(), Object{Track: seal[0], ObjectID: 0, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if emitted.Load() != 1 {
		t.Fatalf("Submit on an idle shard returned before emit (%d emitted)", emitted.Load())
	}
	if err := ss.SubmitBatch(context.Background(), []Object{{Track: seal[0], ObjectID: 1}, {Track: seal[0], ObjectID: 2}}); err != nil {
		t.Fatal(err)
	}
	if emitted.Load() != 3 {
		t.Fatalf("SubmitBatch on an idle shard returned before emit (%d emitted)", emitted.Load())
	}
	// TrySubmit hands over to the worker, which then holds the shard:
	// Submit queues behind it and returns without processing.
	ss.TrySubmit(Object{Track: seal[0], ObjectID: 100})
	<-entered
	if err := ss.Submit(context.Background(), Object{Track: seal[0], ObjectID: 101}); err != nil {
		t.Fatal(err)
	}
	if emitted.Load() != 3 {
		t.Fatalf("Submit on a busy shard processed the object itself")
	}
	close(release)
	ss.Close()
	if st := ss.Stats(); st.Objects != 5 || emitted.Load() != 5 {
		t.Fatalf("stats %+v, %d emitted", st, emitted.Load())
	}
}

// A queue stays FIFO and bounded while take frees the front and push
// refills the back (the queued objects are moved to the front only when
// the back is reached), and take leaves no references behind.
func TestQueueWrapsInOrder(t *testing.T) {
	const bound, batch = 5, 3
	q := newQueue(bound, batch)
	ctx := context.Background()
	next, want := uint64(0), uint64(0)
	for round := range 40 {
		for range round%bound + 1 { // fill up to the bound
			if err := q.push(ctx, &Object{ObjectID: next, Payload: []byte{1}}, false); err != nil {
				if !errors.Is(err, ErrQueueFull) {
					t.Fatal(err)
				}
				break
			}
			next++
		}
		q.mu.Lock()
		n := len(q.pending) - q.head
		q.mu.Unlock()
		if n > bound || uint64(n) != next-want {
			t.Fatalf("round %d: %d queued, pushed %d taken %d", round, n, next, want)
		}
		for range round%2 + 1 {
			if !q.take(batch) {
				break
			}
			for _, o := range q.batch {
				if o.ObjectID != want {
					t.Fatalf("round %d: took object %d, want %d", round, o.ObjectID, want)
				}
				want++
			}
		}
		free := append(q.pending[:q.head:q.head], q.pending[len(q.pending):cap(q.pending)]...)
		for _, o := range free {
			if o.Payload != nil {
				t.Fatalf("round %d: a free slot still holds object %d", round, o.ObjectID)
			}
		}
	}
	if want < 40 {
		t.Fatalf("only %d objects went through", want)
	}
}
