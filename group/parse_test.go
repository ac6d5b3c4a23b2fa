package group

import (
	"bytes"
	"context"
	"testing"

	"github.com/moqsframe/moqsframe/mlsgroup"
)

func realMessages(t testing.TB) (kp, leave []byte) {
	ctx := context.Background()
	a, err := mlsgroup.NewMember([]byte("alice"), "g")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := mlsgroup.NewMember([]byte("bob-the-joiner"), "g")
	if err := a.Create(ctx); err != nil {
		t.Fatal(err)
	}
	kp, err = b.KeyPackage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leave, err = a.Leave(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return kp, leave
}

func TestParsers(t *testing.T) {
	kp, leave := realMessages(t)
	id, err := keyPackageIdentity(kp)
	if err != nil || !bytes.Equal(id, []byte("bob-the-joiner")) {
		t.Fatalf("keyPackageIdentity = %q, %v", id, err)
	}
	e, leaf, err := proposalSender(leave)
	if err != nil || e != 0 || leaf != 0 {
		t.Fatalf("proposalSender = %d %d %v", e, leaf, err)
	}
	for i := range kp {
		if _, err := keyPackageIdentity(kp[:i]); err == nil && i < 20 {
			t.Fatalf("truncated KeyPackage (%d bytes) accepted", i)
		}
	}
	if _, _, err := proposalSender(leave[:10]); err == nil {
		t.Fatal("truncated proposal accepted")
	}
}

func FuzzKeyPackageIdentity(f *testing.F) {
	kp, leave := realMessages(f)
	f.Add(kp)
	f.Add(leave)
	f.Add([]byte{0, 1, 0, 1, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := keyPackageIdentity(b)
		if err == nil && len(id) == 0 {
			t.Fatal("empty identity accepted")
		}
	})
}

func FuzzProposalSender(f *testing.F) {
	kp, leave := realMessages(f)
	f.Add(kp)
	f.Add(leave)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = proposalSender(b)
	})
}
