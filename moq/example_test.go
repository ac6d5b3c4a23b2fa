package moq_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/moqsframe/moqsframe/moq"
)

// A publisher and a subscriber, both clients of a relay (cmd/moq-relay) at
// 127.0.0.1:4443. The security group's CommitTrack: one object per message,
// group ID = epoch. Not run by go test (needs a relay).
func Example_relayClients() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := &moq.Config{InsecureSkipVerify: true} // dev relay certificate
	ns := []string{"sg", "group-42"}

	pubSess, err := moq.Dial(ctx, "127.0.0.1:4443", cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pubSess.Close()
	commits, err := pubSess.Publish(ns, "CommitTrack") // register, then announce
	if err != nil {
		log.Fatal(err)
	}
	if err := pubSess.Announce(ctx, ns); err != nil {
		log.Fatal(err)
	}

	subSess, err := moq.Dial(ctx, "127.0.0.1:4443", cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer subSess.Close()
	sub, err := subSess.Subscribe(ctx, ns, "CommitTrack")
	if err != nil {
		log.Fatal(err) // errors.Is(err, moq.ErrUnknownTrack) if nobody announced ns
	}
	defer sub.Close()

	// Objects written with no subscriber are discarded: wait for the relay.
	if err := commits.WaitSubscribers(ctx, 1); err != nil {
		log.Fatal(err)
	}
	const epoch = 7
	if err := commits.WriteObject(epoch, 0, 0, []byte("commit bytes")); err != nil {
		log.Fatal(err)
	}
	obj, err := sub.ReadObject(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(obj.GroupID, string(obj.Payload))
}
