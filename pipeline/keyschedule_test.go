package pipeline

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"

	"github.com/moqsframe/moqsframe/keyschedule"
	"github.com/moqsframe/moqsframe/sframe"
)

// A pipeline fed by key schedules just works: member 0 seals two tracks
// (one Stream context each) through a stage while epochs roll over, and
// member 1 opens everything through another stage.
func TestStagesWithKeySchedule(t *testing.T) {
	suite := sframe.AES128GCMSHA256_128
	sender, err := keyschedule.New(suite)
	if err != nil {
		t.Fatal(err)
	}
	receiver, _ := keyschedule.New(suite)
	install := func(epoch uint64) {
		base := make([]byte, suite.KeySize())
		rand.Read(base)
		for i, s := range []*keyschedule.Schedule{sender, receiver} {
			if err := s.Install(keyschedule.Epoch{Number: epoch, BaseKey: base, GroupSize: 2, Index: uint64(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(0)
	var sealTracks, openTracks []*Track
	for i := range 2 {
		st, _ := NewTrack([]string{"group", "room"}, fmt.Sprint("track", i))
		stream, err := sender.Stream(uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		st.Sealer = stream
		ot, _ := NewTrack([]string{"group", "room"}, fmt.Sprint("track", i))
		ot.Opener = receiver
		sealTracks, openTracks = append(sealTracks, st), append(openTracks, ot)
	}
	var mu sync.Mutex
	var sealed []Object
	seal := NewSealStage(Config{Workers: 2}, func(batch []Object) {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range batch {
			if o.Err != nil {
				t.Error(o.Err)
			}
			o.Payload, o.Out = o.Out, nil
			sealed = append(sealed, o)
		}
	})
	const perEpoch, epochs = 50, 6
	for e := range uint64(epochs) {
		if e > 0 {
			install(e) // while objects of the previous epoch are in flight
		}
		for i := range perEpoch {
			tr := i % 2
			seal.Submit(context.Background(), Object{Track: sealTracks[tr], GroupID: e, ObjectID: uint64(i / 2),
				Payload: []byte(fmt.Sprint("epoch ", e, " object ", i))})
		}
	}
	seal.Close()
	var opened int
	open := NewOpenStage(Config{Workers: 2}, func(batch []Object) {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range batch {
			if o.Err != nil {
				t.Errorf("group %d object %d: %v", o.GroupID, o.ObjectID, o.Err)
				continue
			}
			if !bytes.HasPrefix(o.Out, []byte(fmt.Sprint("epoch ", o.GroupID, " "))) {
				t.Errorf("opened %q as group %d", o.Out, o.GroupID)
			}
			opened++
		}
	})
	receiving := map[*Track]*Track{sealTracks[0]: openTracks[0], sealTracks[1]: openTracks[1]}
	for _, o := range sealed {
		o.Track = receiving[o.Track]
		open.Submit(context.Background(), o)
	}
	open.Close()
	if opened != perEpoch*epochs {
		t.Fatalf("opened %d of %d", opened, perEpoch*epochs)
	}
}
