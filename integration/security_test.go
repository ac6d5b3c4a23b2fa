package integration

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/coord/wire/wiretest"
	"github.com/moqsframe/moqsframe/group"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/mlsgroup"
)

// Security groups against outsiders, impostors and broken members, with the
// relay and the CS as processes that authenticate every client (mTLS with
// the deployment CA, admission policy testPolicy), members in process.
// "secure" admits alice, bob, carol and dave; "room" admits any name the
// CA certifies.

// selfSigned is a certificate for name that is its own issuer.
func selfSigned(t *testing.T, name string) *identity.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{{Scheme: identity.URIScheme, Opaque: name}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &identity.Certificate{Chain: [][]byte{der}, Leaf: c, Key: key}
}

// csRefusals reads sframe_cs_refused_total by reason from the CS.
func (e *groupEnv) csRefusals() map[string]int {
	e.t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: identity.ClientTLS(e.pki.issue("alice"), e.pki.verifier)}}
	resp, err := hc.Get(e.csURL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		rest, ok := strings.CutPrefix(l, `sframe_cs_refused_total{reason="`)
		if !ok {
			continue
		}
		reason, n, _ := strings.Cut(rest, `"} `)
		v, _ := strconv.Atoi(n)
		out[reason] = v
	}
	return out
}

// events collects a member's events from the start.
type events struct {
	mu  sync.Mutex
	evs []group.Event
}

func collect(m *group.Member) *events {
	ev := &events{}
	go func() {
		for e := range m.Events() {
			ev.mu.Lock()
			ev.evs = append(ev.evs, e)
			ev.mu.Unlock()
		}
	}()
	return ev
}

// wait returns the first event of type typ, waiting for it.
func (ev *events) wait(t *testing.T, who string, typ group.EventType) group.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ev.mu.Lock()
		for _, e := range ev.evs {
			if e.Type == typ {
				ev.mu.Unlock()
				return e
			}
		}
		ev.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %v event", who, typ)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func rosterNames(m *group.Member) []string {
	var out []string
	for _, e := range m.Roster() {
		out = append(out, e.Name)
	}
	return out
}

// TestGroupOutsidersNeverGetIn: a self-signed certificate, one from another
// CA and an expired one fail the TLS handshake with the CS; a valid
// certificate whose name the policy does not admit gets 403 for every
// request, also as a full group member trying to join; an admitted member
// cannot post another identity's KeyPackage. Every refusal is counted by
// the CS; the group goes on with exactly its members, and the next
// admitted joiner gets in.
func TestGroupOutsidersNeverGetIn(t *testing.T) {
	e := newGroupEnv(t)
	sess := e.session()
	alice, bob := e.member("alice", "secure", sess, nil), e.member("bob", "secure", sess, nil)
	joinAll(t, alice)
	joinAll(t, bob)
	convergeAll(t, 1, 20*time.Second, alice, bob)
	ctx := context.Background()

	past := time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339)
	expiredAt := time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name string
		cert *identity.Certificate
	}{
		{"self-signed", selfSigned(t, "carol")},
		{"other CA", e.pki.issueWith(e.pki.otherCA(), "carol")},
		{"expired", e.pki.issue("carol", "-not-before", past, "-not-after", expiredAt)},
	} {
		cl := e.client(tc.cert)
		cl.Retries = 0
		_, _, err := cl.State(ctx, "secure")
		var se *coord.StatusError
		if err == nil || errors.As(err, &se) {
			t.Fatalf("%s: want a refused TLS handshake, got %v", tc.name, err)
		}
	}

	// mallory has a valid certificate, but the policy does not admit her.
	mallory := e.pki.issue("mallory")
	mcl := e.client(mallory)
	mcl.Retries = 0
	for what, err := range map[string]error{
		"state":  func() error { _, _, err := mcl.State(ctx, "secure"); return err }(),
		"commit": mcl.Commit(ctx, "secure", 1, []byte("junk"), nil),
		"ack":    mcl.Ack(ctx, "secure", 1, 0, "mallory"),
		"archive": func() error {
			_, err := mcl.CommitAt(ctx, "secure", 0)
			return err
		}(),
	} {
		if !errors.Is(err, coord.ErrForbidden) {
			t.Errorf("mallory's %s: %v, want 403", what, err)
		}
	}
	// As a member who trusts anything, she still cannot join.
	mm := e.memberWith(mallory, "secure", sess, func(c *group.Config) { c.Policy = identity.AllowAll() })
	jctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	if err := mm.Join(jctx); !errors.Is(err, coord.ErrForbidden) {
		t.Errorf("mallory's join: %v, want 403", err)
	}
	cancel()

	// carol (admitted) posts dave's KeyPackage: someone else's identity.
	daveM, err := mlsgroup.NewMember(e.pki.issue("dave"), mlsgroup.Authenticator{Verifier: e.pki.verifier, Policy: e.pki.policy}, "secure")
	if err != nil {
		t.Fatal(err)
	}
	defer daveM.Close()
	kp, err := daveM.KeyPackage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	carolCert := e.pki.issue("carol")
	ccl := e.client(carolCert)
	if _, err := ccl.Join(ctx, "secure", kp); !errors.Is(err, coord.ErrForbidden) {
		t.Errorf("carol posting dave's KeyPackage: %v, want 403", err)
	}

	// The group goes on: carol joins for real; nobody else is in.
	carol := e.memberWith(carolCert, "secure", sess, nil)
	joinAll(t, carol)
	convergeAll(t, 2, 30*time.Second, alice, bob, carol)
	for _, m := range []*group.Member{alice, bob, carol} {
		if got := rosterNames(m); !slices.Equal(got, []string{"alice", "bob", "carol"}) {
			t.Fatalf("%s's roster: %v", m.Identity(), got)
		}
	}
	checkMedia(t, alice, 0, []*group.Member{bob, carol}, []*group.Member{mm})

	r := e.csRefusals()
	t.Logf("CS refusals: %v", r)
	for reason, min := range map[string]int{
		coord.ReasonTLSUntrusted: 2, coord.ReasonTLSExpired: 1, coord.ReasonNotAdmitted: 5,
		coord.ReasonKeyPackageIdentityMismatch: 1,
	} {
		if r[reason] < min {
			t.Errorf("CS counted %d %s, want ≥ %d", r[reason], reason, min)
		}
	}
	// Nothing of the outsiders reached the members.
	for _, m := range []*group.Member{alice, bob, carol} {
		if s := m.Stats(); s.Refused != 0 || s.AcksRefused != 0 {
			t.Errorf("%s refused %d credentials, %d acks: the CS let something through", m.Identity(), s.Refused, s.AcksRefused)
		}
	}
}

// TestGroupRefusedCredential: the CS admits anyone to "room", and alice's
// own check is bypassed (her policy admits anyone too), so she commits
// mallory. bob's policy admits only alice and bob: he refuses that commit
// (the MoQ object, then the CS's), raises EventRefused naming mallory,
// keeps the keys of the last good epoch and stops sending.
func TestGroupRefusedCredential(t *testing.T) {
	e := newGroupEnv(t)
	sess := e.session()
	strict, err := identity.ParsePolicy([]byte(`{"groups": {"room": ["alice", "bob"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	alice := e.member("alice", "room", sess, nil)
	bob := e.member("bob", "room", sess, func(c *group.Config) { c.Policy = strict })
	bobEvents := collect(bob)
	joinAll(t, alice)
	joinAll(t, bob)
	good, _ := convergeAll(t, 1, 20*time.Second, alice, bob)
	st, err := bob.Stream(3)
	if err != nil {
		t.Fatal(err)
	}

	mallory := e.member("mallory", "room", sess, nil)
	joinAll(t, mallory)
	ev := bobEvents.wait(t, "bob", group.EventRefused)
	var re *mlsgroup.RefusedError
	if !errors.As(ev.Err, &re) || re.Name != "mallory" || !errors.Is(ev.Err, identity.ErrNotAdmitted) {
		t.Fatalf("bob's refusal: %v", ev.Err)
	}
	if _, err := st.Seal(nil, []byte("md"), []byte("x")); !errors.Is(err, group.ErrRefused) {
		t.Fatalf("bob still seals after refusing: %v", err)
	}
	if ks, err := bob.KeyState(context.Background()); err != nil || ks.Epoch != good {
		t.Fatalf("bob at epoch %d (%v), want %d", ks.Epoch, err, good)
	}
	if got := rosterNames(bob); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("bob's roster %v", got)
	}
	if bob.Stats().Refused == 0 {
		t.Fatal("bob's refusal not counted")
	}
}

// TestGroupJunkCommit: a non-member's junk commit is refused by the CS and
// the group goes on. An admitted member's junk commit at the current epoch
// is accepted by the CS (it reads only the header) and nobody can process
// it: every member raises EventStuck once, stays on the last good epoch
// and keeps sending and opening media there, and reports it; once nobody
// has acknowledged the next epoch for the CS's grace (5 s), the CS
// withdraws the commit, and the group moves on: dave joins.
func TestGroupJunkCommit(t *testing.T) {
	e := newGroupEnv(t)
	sess := e.session()
	alice, bob := e.member("alice", "secure", sess, nil), e.member("bob", "secure", sess, nil)
	aliceEvents, bobEvents := collect(alice), collect(bob)
	joinAll(t, alice)
	joinAll(t, bob)
	epoch, _ := convergeAll(t, 1, 20*time.Second, alice, bob)
	ctx := context.Background()

	// A commit header for the group and epoch, then garbage: the CS checks
	// only the header.
	junkAt := func(epoch uint64) []byte { return wiretest.Commit("secure", epoch, "not a commit at all") }
	mcl := e.client(e.pki.issue("mallory"))
	if err := mcl.Commit(ctx, "secure", epoch, junkAt(epoch), nil); !errors.Is(err, coord.ErrForbidden) {
		t.Fatalf("non-member's junk commit: %v, want 403", err)
	}
	carol := e.member("carol", "secure", sess, nil)
	joinAll(t, carol)
	epoch, _ = convergeAll(t, epoch+1, 30*time.Second, alice, bob, carol)

	// carol is admitted; her junk wins the epoch.
	if err := e.client(e.pki.issue("carol")).Commit(ctx, "secure", epoch, junkAt(epoch), nil); err != nil {
		t.Fatalf("member's junk commit: %v", err)
	}
	for who, ev := range map[string]*events{"alice": aliceEvents, "bob": bobEvents} {
		if s := ev.wait(t, who, group.EventStuck); s.Err == nil {
			t.Fatalf("%s: stuck without a reason", who)
		}
	}
	for _, m := range []*group.Member{alice, bob} {
		if ks, _ := m.KeyState(ctx); ks.Epoch != epoch {
			t.Fatalf("%s moved to epoch %d", m.Identity(), ks.Epoch)
		}
	}
	checkMedia(t, alice, 1, []*group.Member{bob, carol}, nil)
	checkMedia(t, bob, 1, []*group.Member{alice, carol}, nil)

	dave := e.member("dave", "secure", sess, nil)
	joinAll(t, dave)
	next, _ := convergeAll(t, epoch+1, 40*time.Second, alice, bob, carol, dave)
	checkMedia(t, dave, 1, []*group.Member{alice, bob, carol}, nil)
	t.Logf("junk commit of epoch %d withdrawn; dave joined at epoch %d", epoch, next)
}

// TestGroupRestartAndImpersonation: bob restarts with a new key and a new
// certificate for his name: the committer replaces his old leaf in one
// commit, the old bob is removed, the new one reads the media. A
// certificate for "bob" from another CA is refused at the handshake.
func TestGroupRestartAndImpersonation(t *testing.T) {
	e := newGroupEnv(t)
	sess := e.session()
	alice, bob := e.member("alice", "secure", sess, nil), e.member("bob", "secure", sess, nil)
	joinAll(t, alice)
	joinAll(t, bob)
	epoch, _ := convergeAll(t, 1, 20*time.Second, alice, bob)
	oldFP := alice.Roster()[1].Fingerprint

	impostor := e.client(e.pki.issueWith(e.pki.otherCA(), "bob"))
	impostor.Retries = 0
	if _, _, err := impostor.State(context.Background(), "secure"); err == nil {
		t.Fatal("a certificate for bob from another CA reached the CS")
	}

	bob2 := e.member("bob", "secure", e.session(), nil) // a new key and certificate
	joinAll(t, bob2)
	select {
	case <-bob.Removed():
	case <-time.After(30 * time.Second):
		t.Fatal("the old bob was not removed")
	}
	convergeAll(t, epoch+1, 30*time.Second, alice, bob2)
	r := alice.Roster()
	if len(r) != 2 || r[1].Name != "bob" || r[1].Fingerprint == oldFP {
		t.Fatalf("alice's roster %+v", r)
	}
	checkMedia(t, alice, 0, []*group.Member{bob2}, []*group.Member{bob})
}
