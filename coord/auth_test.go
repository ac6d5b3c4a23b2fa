package coord

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/moqsframe/moqsframe/coord/store"
	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/coord/wire/wiretest"
	"github.com/moqsframe/moqsframe/identity"
	mls "github.com/thomas-vilte/mls-go"
	"github.com/thomas-vilte/mls-go/ciphersuite"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// authCS is a CS with Config.Auth behind real mutual TLS (identity.ServerTLS),
// with certificates of a test deployment CA.
type authCS struct {
	srv   *Server
	rec   *Recorder
	url   string
	clock *fakeClock
	ca    *identity.CA
	other *identity.CA // a CA the CS does not trust
	roots *x509.CertPool
	certs map[string]*identity.Certificate
}

func issue(t *testing.T, ca *identity.CA, name string, hosts ...string) *identity.Certificate {
	t.Helper()
	c, k, err := ca.Issue(name, identity.IssueOptions{Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	return &identity.Certificate{Chain: [][]byte{c.Raw}, Leaf: c, Key: k}
}

func newAuthCS(t *testing.T, policy string, tune func(*Auth)) *authCS {
	t.Helper()
	ca, err := identity.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := identity.NewCA("other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier([]*x509.Certificate{ca.Certificate})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := identity.ParsePolicy([]byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	auth := &Auth{Policy: pol, Verifier: v, Now: clock.Now}
	if tune != nil {
		tune(auth)
	}
	rec := &Recorder{}
	metrics := NewMetrics(nil)
	srv, err := NewServer(Config{Store: store.NewMemStore(), Forwarder: rec, Auth: auth, Metrics: metrics, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.TLS = identity.ServerTLS(issue(t, ca, "cs", "127.0.0.1", "localhost"), v, metrics.HandshakeRefused)
	hs.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	hs.StartTLS()
	t.Cleanup(hs.Close)
	cs := &authCS{srv: srv, rec: rec, url: hs.URL, clock: clock, ca: ca, other: other,
		roots: x509.NewCertPool(), certs: map[string]*identity.Certificate{}}
	cs.roots.AddCert(ca.Certificate)
	return cs
}

func (cs *authCS) cert(t *testing.T, name string) *identity.Certificate {
	t.Helper()
	if c, ok := cs.certs[name]; ok {
		return c
	}
	c := issue(t, cs.ca, name)
	cs.certs[name] = c
	return c
}

func (cs *authCS) client(t *testing.T, name string) *Client {
	t.Helper()
	cl, err := NewClientTLS(cs.url, ClientTLS{Certificate: cs.cert(t, name), Roots: cs.roots, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cl.Retries = 0
	return cl
}

// keyPackage is a KeyPackage prefix with name's X.509 credential.
func (cs *authCS) keyPackage(t *testing.T, name, filler string) []byte {
	t.Helper()
	c := cs.cert(t, name)
	return append(wiretest.KeyPackageX509(sigKeyOf(t, c.Key), c.Chain...), filler...)
}

func sigKeyOf(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	pub, err := k.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	return pub.Bytes()
}

// raw sends one request as name and returns the status and decoded JSON
// refusal body.
func (cs *authCS) raw(t *testing.T, name, method, path string, body []byte) (int, refusalBody, http.Header) {
	t.Helper()
	cl := cs.client(t, name)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, cs.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var rb refusalBody
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(raw, &rb); err != nil {
			t.Fatalf("%s %s: %d answer is not JSON: %q", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, rb, resp.Header
}

func wantRefused(t *testing.T, err error, code int, reason string) {
	t.Helper()
	var se *StatusError
	if !errors.As(err, &se) || se.Code != code || se.Reason != reason {
		t.Fatalf("got %v, want %d %s", err, code, reason)
	}
	if !errors.Is(err, classOf(code)) {
		t.Fatalf("%v does not match %v", err, classOf(code))
	}
}

func metricsText(t *testing.T, m *Metrics) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

const roomPolicy = `{"groups": {"room": ["alice", "bob", "carol", "dave"], "other": ["bob"]}}`

func TestAuthTLS(t *testing.T) {
	cs := newAuthCS(t, roomPolicy, nil)
	ctx := context.Background()
	outsider, err := NewClientTLS(cs.url, ClientTLS{Certificate: issue(t, cs.other, "alice"), Roots: cs.roots})
	if err != nil {
		t.Fatal(err)
	}
	anonymous, err := NewClientTLS(cs.url, ClientTLS{Roots: cs.roots})
	if err != nil {
		t.Fatal(err)
	}
	// The client verifies the CS: with the other CA's roots it refuses it.
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(cs.other.Certificate)
	wrongCS, err := NewClientTLS(cs.url, ClientTLS{Certificate: cs.cert(t, "alice"), Roots: otherRoots})
	if err != nil {
		t.Fatal(err)
	}
	for name, cl := range map[string]*Client{"outsider certificate": outsider, "no certificate": anonymous, "untrusted CS": wrongCS} {
		cl.Retries = 0
		_, err := cl.Epoch(ctx, "room")
		var se *StatusError
		if err == nil || errors.As(err, &se) {
			t.Errorf("%s: want a TLS handshake failure, got %v", name, err)
		}
	}
	// The outsider's certificate and the anonymous client were counted
	// at the handshake (the client that refused the CS sent nothing).
	if n := cs.srv.Metrics().Refused(ReasonTLSUntrusted); n != 1 {
		t.Errorf("refused handshakes counted %d, want 1", n)
	}
	if n := cs.srv.Metrics().Refused(ReasonTLSNone); n != 1 {
		t.Errorf("handshakes without a certificate counted %d, want 1", n)
	}
	if _, err := NewClientTLS(cs.url, ClientTLS{}); !errors.Is(err, ErrNoCSRoots) {
		t.Errorf("client without CS roots: %v", err)
	}
	if _, err := NewClientTLS("http://localhost:1", ClientTLS{Roots: cs.roots}); err == nil {
		t.Error("TLS client for an http:// URL accepted")
	}
	// An admitted member gets through.
	if _, err := cs.client(t, "alice").Epoch(ctx, "room"); !errors.Is(err, store.ErrUnknownGroup) {
		t.Errorf("alice: %v", err)
	}
	// Without a TLS identity (a handler reached without mutual TLS) the
	// answer is 401.
	rw := httptest.NewRecorder()
	cs.srv.ServeHTTP(rw, httptest.NewRequest(http.MethodGet, "/v1/groups/room/epoch", nil))
	var rb refusalBody
	if rw.Code != http.StatusUnauthorized || json.Unmarshal(rw.Body.Bytes(), &rb) != nil || rb.Error != ReasonUnauthenticated {
		t.Errorf("no identity: %d %s", rw.Code, rw.Body)
	}
	if cs.srv.Metrics().Refused(ReasonUnauthenticated) != 1 {
		t.Error("401 not counted")
	}
}

// An identity with a valid certificate that the policy does not admit to
// the group gets 403 on every endpoint, and cannot create the group.
func TestAuthNotAdmitted(t *testing.T) {
	cs := newAuthCS(t, roomPolicy, nil)
	ctx := context.Background()
	// mallory cannot create the group.
	if _, err := cs.client(t, "mallory").Join(ctx, "room", cs.keyPackage(t, "mallory", "")); err == nil {
		t.Fatal("mallory created room")
	} else {
		wantRefused(t, err, http.StatusForbidden, ReasonNotAdmitted)
	}
	// bob is admitted to "other" and "room" but nobody to a group the
	// policy does not list.
	_, err := cs.client(t, "bob").Join(ctx, "unlisted", cs.keyPackage(t, "bob", ""))
	wantRefused(t, err, http.StatusForbidden, ReasonNotAdmitted)
	if _, err := cs.client(t, "alice").Epoch(ctx, "room"); !errors.Is(err, store.ErrUnknownGroup) {
		t.Fatalf("room exists after refused joins: %v", err)
	}

	alice := cs.client(t, "alice")
	if created, err := alice.Join(ctx, "room", cs.keyPackage(t, "alice", "")); err != nil || !created {
		t.Fatalf("alice creates room: %v %v", created, err)
	}
	if err := alice.Commit(ctx, "room", 0, wiretest.Commit("room", 0, "c"), wiretest.Welcome("w")); err != nil {
		t.Fatal(err)
	}
	join := mustMarshal(t, &wire.Request{GroupID: []byte("room"), Type: wire.RequestJoin, Body: cs.keyPackage(t, "mallory", "")})
	leave := mustMarshal(t, &wire.Request{GroupID: []byte("room"), Type: wire.RequestLeave, Body: wiretest.Handshake("room", 1, wire.ContentTypeProposal, "")})
	commit := mustMarshal(t, &wire.CommitRequest{GroupID: []byte("room"), Epoch: 1, Commit: wiretest.Commit("room", 1, "m")})
	ack := mustMarshal(t, &wire.EpochAck{GroupID: []byte("room"), Epoch: 1})
	before := len(cs.rec.Items())
	for _, tc := range []struct {
		method, path string
		body         []byte
	}{
		{"POST", "/v1/groups/room/requests", join},
		{"POST", "/v1/groups/room/requests", leave},
		{"POST", "/v1/groups/room/commits", commit},
		{"POST", "/v1/groups/room/acks", ack},
		{"GET", "/v1/groups/room/epoch", nil},
		{"GET", "/v1/groups/room/state", nil},
		{"GET", "/v1/groups/room/commits/0", nil},
		{"GET", "/v1/groups/room/welcomes/0", nil},
		{"GET", "/v1/groups/room/requests/0", nil},
	} {
		code, rb, _ := cs.raw(t, "mallory", tc.method, tc.path, tc.body)
		if code != http.StatusForbidden || rb.Error != ReasonNotAdmitted || rb.Identity != "mallory" || rb.Group != "room" || rb.Message == "" {
			t.Errorf("%s %s: %d %+v", tc.method, tc.path, code, rb)
		}
	}
	if n := len(cs.rec.Items()); n != before {
		t.Errorf("%d items forwarded for mallory", n-before)
	}
	// Client methods report it as errors.Is(err, ErrForbidden).
	_, err = cs.client(t, "mallory").CommitAt(ctx, "room", 0)
	wantRefused(t, err, http.StatusForbidden, ReasonNotAdmitted)
	if e, err := alice.Epoch(ctx, "room"); err != nil || e != 1 {
		t.Fatalf("epoch %d %v", e, err)
	}
	if got := cs.srv.Metrics().Refused(ReasonNotAdmitted); got != 12 {
		t.Errorf("not_admitted refusals = %d, want 12", got)
	}
	if m := metricsText(t, cs.srv.Metrics()); !strings.Contains(m, `sframe_cs_refused_total{reason="not_admitted"} 12`) ||
		!strings.Contains(m, `sframe_cs_http_responses_total{code="403",endpoint="state"} 1`) {
		t.Errorf("metrics:\n%s", m)
	}
}

func TestAuthJoinKeyPackage(t *testing.T) {
	cs := newAuthCS(t, roomPolicy, nil)
	ctx := context.Background()
	alice := cs.cert(t, "alice")
	outsiderAlice := issue(t, cs.other, "alice")
	for _, tc := range []struct {
		name   string
		kp     []byte
		code   int
		reason string
	}{
		{"names bob", cs.keyPackage(t, "bob", ""), http.StatusForbidden, ReasonKeyPackageIdentityMismatch},
		{"basic credential", wiretest.KeyPackageBasic(sigKeyOf(t, alice.Key), "alice"), http.StatusForbidden, ReasonKeyPackageCredentialInvalid},
		{"other CA", wiretest.KeyPackageX509(sigKeyOf(t, outsiderAlice.Key), outsiderAlice.Chain...), http.StatusForbidden, ReasonKeyPackageCredentialInvalid},
		{"signature key is not the certificate's", wiretest.KeyPackageX509(sigKeyOf(t, cs.cert(t, "bob").Key), alice.Chain...), http.StatusForbidden, ReasonKeyPackageCredentialInvalid},
		{"certificate does not parse", wiretest.KeyPackageX509(sigKeyOf(t, alice.Key), []byte("junk")), http.StatusForbidden, ReasonKeyPackageCredentialInvalid},
		{"leaf does not parse", []byte{0, 1, 0, 2, 5}, http.StatusBadRequest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, rb, _ := cs.raw(t, "alice", "POST", "/v1/groups/room/requests",
				mustMarshal(t, &wire.Request{GroupID: []byte("room"), Type: wire.RequestJoin, Body: tc.kp}))
			if code != tc.code || (tc.reason != "" && rb.Error != tc.reason) {
				t.Fatalf("%d %+v, want %d %s", code, rb, tc.code, tc.reason)
			}
		})
	}
	if cs.srv.Metrics().Refused(ReasonKeyPackageIdentityMismatch) != 1 || cs.srv.Metrics().Refused(ReasonKeyPackageCredentialInvalid) != 4 {
		t.Errorf("refusals not counted:\n%s", metricsText(t, cs.srv.Metrics()))
	}
	// A real mls-go KeyPackage with alice's X.509 credential creates room.
	mc, err := mls.NewClient([]byte("alice"), ciphersuite.MLS128DHKEMP256, mls.WithX509Credential(alice.Leaf.Raw, alice.Key))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := mc.FreshKeyPackageBytes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if created, err := cs.client(t, "alice").Join(ctx, "room", kp); err != nil || !created {
		t.Fatalf("alice's join: created=%v %v", created, err)
	}
	// bob's own KeyPackage is queued, not alice's posted by bob.
	_, err = cs.client(t, "bob").Join(ctx, "room", kp)
	wantRefused(t, err, http.StatusForbidden, ReasonKeyPackageIdentityMismatch)
	if created, err := cs.client(t, "bob").Join(ctx, "room", cs.keyPackage(t, "bob", "")); err != nil || created {
		t.Fatalf("bob's join: created=%v %v", created, err)
	}
	if reqs := cs.rec.Track("request", "room"); len(reqs) != 1 {
		t.Fatalf("RequestTrack: %d items", len(reqs))
	}
}

func TestAuthRateLimit(t *testing.T) {
	cs := newAuthCS(t, roomPolicy, func(a *Auth) { a.Rate, a.Burst = 2, 3 })
	ctx := context.Background()
	alice := cs.client(t, "alice")
	for i := 0; i < 3; i++ {
		if _, err := alice.Epoch(ctx, "room"); !errors.Is(err, store.ErrUnknownGroup) {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	_, err := alice.Epoch(ctx, "room")
	wantRefused(t, err, http.StatusTooManyRequests, ReasonRateLimited)
	var se *StatusError
	if errors.As(err, &se); se.RetryAfter != time.Second {
		t.Errorf("Retry-After %v, want 1s (rounded up from 0.5s)", se.RetryAfter)
	}
	// The bucket is per identity, and it applies even to a refused group.
	if _, err := cs.client(t, "bob").Epoch(ctx, "room"); !errors.Is(err, store.ErrUnknownGroup) {
		t.Fatalf("bob: %v", err)
	}
	code, rb, hdr := cs.raw(t, "alice", "GET", "/v1/groups/nowhere/epoch", nil)
	if code != http.StatusTooManyRequests || rb.Error != ReasonRateLimited || hdr.Get("Retry-After") != "1" {
		t.Fatalf("%d %+v %v", code, rb, hdr)
	}
	cs.clock.Advance(500 * time.Millisecond) // one token
	if _, err := alice.Epoch(ctx, "room"); !errors.Is(err, store.ErrUnknownGroup) {
		t.Fatalf("after refill: %v", err)
	}
	_, err = alice.Epoch(ctx, "room")
	wantRefused(t, err, http.StatusTooManyRequests, ReasonRateLimited)
	cs.clock.Advance(time.Hour) // full again, never more than Burst
	for i := 0; i < 3; i++ {
		if _, err := alice.Epoch(ctx, "room"); !errors.Is(err, store.ErrUnknownGroup) {
			t.Fatalf("after an hour, request %d: %v", i, err)
		}
	}
	_, err = alice.Epoch(ctx, "room")
	wantRefused(t, err, http.StatusTooManyRequests, ReasonRateLimited)
	if got := cs.srv.Metrics().Refused(ReasonRateLimited); got != 4 {
		t.Errorf("rate_limited = %d, want 4", got)
	}
}

func TestAuthPendingJoins(t *testing.T) {
	cs := newAuthCS(t, `{"groups": {"room": ["*"]}, "max_members": 3}`, func(a *Auth) { a.PendingJoinTTL = time.Minute })
	ctx := context.Background()
	join := func(name, filler string) (bool, error) {
		return cs.client(t, name).Join(ctx, "room", cs.keyPackage(t, name, filler))
	}
	if created, err := join("alice", ""); err != nil || !created {
		t.Fatalf("alice: %v %v", created, err)
	}
	// The creator is not pending: its identical retry is still 201.
	if created, err := join("alice", ""); err != nil || !created {
		t.Fatalf("alice retry: %v %v", created, err)
	}
	for _, n := range []string{"bob", "carol", "dave"} {
		if _, err := join(n, ""); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
	// bob's identical retry is answered again without a second RequestTrack
	// item; a different join from bob is refused while the first is pending.
	if _, err := join("bob", ""); err != nil {
		t.Fatalf("bob's retry: %v", err)
	}
	if n := len(cs.rec.Track("request", "room")); n != 3 {
		t.Fatalf("RequestTrack has %d items, want 3", n)
	}
	_, err := join("bob", "new")
	wantRefused(t, err, http.StatusTooManyRequests, ReasonJoinPending)
	// max_members (3) joins are pending: the group takes no more.
	_, err = join("erin", "")
	wantRefused(t, err, http.StatusTooManyRequests, ReasonGroupJoinsFull)
	// A leave is not a join: not bounded by pending joins.
	if err := cs.client(t, "alice").Leave(ctx, "room", wiretest.Handshake("room", 0, wire.ContentTypeProposal, "")); err != nil {
		t.Fatal(err)
	}

	// An accepted commit settles the pending joins.
	if err := cs.client(t, "alice").Commit(ctx, "room", 0, wiretest.Commit("room", 0, "add"), wiretest.Welcome("w")); err != nil {
		t.Fatal(err)
	}
	if _, err := join("erin", ""); err != nil {
		t.Fatalf("erin after the commit: %v", err)
	}
	if _, err := join("bob", "new"); err != nil {
		t.Fatalf("bob after the commit: %v", err)
	}
	_, err = join("bob", "newer")
	wantRefused(t, err, http.StatusTooManyRequests, ReasonJoinPending)
	// ... and so does time: a pending join expires after PendingJoinTTL.
	cs.clock.Advance(time.Minute)
	if _, err := join("bob", "newer"); err != nil {
		t.Fatalf("bob after the TTL: %v", err)
	}
	m := cs.srv.Metrics()
	if m.Refused(ReasonJoinPending) != 2 || m.Refused(ReasonGroupJoinsFull) != 1 {
		t.Errorf("metrics:\n%s", metricsText(t, m))
	}
}

func TestAuthAckStamped(t *testing.T) {
	cs := newAuthCS(t, roomPolicy, nil)
	ctx := context.Background()
	alice := cs.client(t, "alice")
	if _, err := alice.Join(ctx, "room", cs.keyPackage(t, "alice", "")); err != nil {
		t.Fatal(err)
	}
	if err := alice.Ack(ctx, "room", 0, 0, ""); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		claim  string
		code   int
		reason string
	}{
		{"alice", http.StatusOK, ""},
		{"bob", http.StatusForbidden, ReasonAckIdentityMismatch},
	} {
		body := mustMarshal(t, &wire.EpochAck{GroupID: []byte("room"), Epoch: 0, Leaf: 0, Identity: []byte(tc.claim)})
		if code, rb, _ := cs.raw(t, "alice", "POST", "/v1/groups/room/acks", body); code != tc.code || rb.Error != tc.reason {
			t.Errorf("ack claiming %s: %d %+v", tc.claim, code, rb)
		}
	}
	acks := cs.rec.Track("ack", "room")
	if len(acks) != 2 {
		t.Fatalf("%d acks forwarded, want 2", len(acks))
	}
	for _, a := range acks {
		ea, err := wire.UnmarshalEpochAck(a.Data)
		if err != nil || string(ea.Identity) != "alice" || ea.Epoch != 0 || string(ea.GroupID) != "room" {
			t.Errorf("forwarded ack %+v %v", ea, err)
		}
	}
	if cs.srv.Metrics().Refused(ReasonAckIdentityMismatch) != 1 {
		t.Error("ack_identity_mismatch not counted")
	}
}

func TestAuthConfigErrors(t *testing.T) {
	pol := identity.AllowAll()
	for name, a := range map[string]*Auth{
		"no policy":     {},
		"no verifier":   {Policy: pol},
		"negative rate": {Policy: pol, Verifier: &identity.Verifier{}, Rate: -1},
	} {
		if _, err := NewServer(Config{Store: store.NewMemStore(), Forwarder: &Recorder{}, Auth: a}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
