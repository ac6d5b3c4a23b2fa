package coord

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/coord/store"
	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/coord/wire/wiretest"
	"github.com/moqsframe/moqsframe/internal/devcert"
	"github.com/moqsframe/moqsframe/internal/etcdtest"
)

type testCS struct {
	srv    *Server
	http   *httptest.Server
	rec    *Recorder
	store  store.Store
	client *Client
}

// newTestCS starts the CS over TLS with a development certificate and a
// client that trusts only that certificate.
// storeImpls opens each Store implementation, for tests that run the
// server on both.
func storeImpls(t *testing.T) map[string]func(t *testing.T) store.Store {
	return map[string]func(t *testing.T) store.Store{
		"mem": func(t *testing.T) store.Store { return store.NewMemStore() },
		"bolt": func(t *testing.T) store.Store {
			s, err := store.OpenBoltStore(filepath.Join(t.TempDir(), "cs.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"etcd": func(t *testing.T) store.Store {
			s, err := store.OpenEtcdStore(context.Background(), store.EtcdConfig{
				Endpoints: etcdtest.Shared(t).Endpoints(), Prefix: etcdtest.Prefix(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

func TestMain(m *testing.M) { etcdtest.Main(m) }

func newTestCS(t *testing.T, st store.Store, mods ...func(*Config)) *testCS {
	t.Helper()
	rec := &Recorder{}
	cfg := Config{Store: st, Forwarder: rec, MaxBodyBytes: 64 << 10}
	for _, m := range mods {
		m(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cert, certPEM, _, err := devcert.New(nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	hs.StartTLS()
	t.Cleanup(hs.Close)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("bad PEM")
	}
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool},
		MaxIdleConnsPerHost: 128,
	}, Timeout: 20 * time.Second}
	u := strings.Replace(hs.URL, "127.0.0.1", "localhost", 1)
	cl, err := NewClient(u, hc)
	if err != nil {
		t.Fatal(err)
	}
	cl.Backoff = time.Millisecond
	return &testCS{srv: srv, http: hs, rec: rec, store: st, client: cl}
}

func (cs *testCS) post(t *testing.T, path string, body []byte) (*http.Response, string) {
	t.Helper()
	resp, err := cs.client.hc.Post(cs.client.base.String()+path, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp, b.String()
}

func TestServerLifecycle(t *testing.T) {
	for name, open := range storeImpls(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			cs := newTestCS(t, open(t))
			c := cs.client

			if _, err := c.Epoch(ctx, "room"); !errors.Is(err, store.ErrUnknownGroup) {
				t.Fatalf("epoch of unknown group: %v", err)
			}
			if err := c.Commit(ctx, "room", 0, wiretest.Commit("room", 0, "x"), nil); !errors.Is(err, store.ErrUnknownGroup) {
				t.Fatalf("commit to unknown group: %v", err)
			}
			if err := c.Leave(ctx, "room", wiretest.Handshake("room", 0, wire.ContentTypeProposal, "")); !errors.Is(err, store.ErrUnknownGroup) {
				t.Fatalf("leave of unknown group: %v", err)
			}
			if n := len(cs.rec.Items()); n != 0 {
				t.Fatalf("%d items forwarded for rejected requests", n)
			}

			created, err := c.Join(ctx, "room", wiretest.KeyPackage("A"))
			if err != nil || !created {
				t.Fatalf("A join: created=%v err=%v", created, err)
			}
			if e, err := c.Epoch(ctx, "room"); err != nil || e != 0 {
				t.Fatalf("epoch after create = %d, %v", e, err)
			}
			created, err = c.Join(ctx, "room", wiretest.KeyPackage("B"))
			if err != nil || created {
				t.Fatalf("B join: created=%v err=%v", created, err)
			}
			reqs := cs.rec.Track("request", "room")
			if len(reqs) != 1 || reqs[0].Num != 0 {
				t.Fatalf("RequestTrack = %+v", reqs)
			}
			r, err := wire.UnmarshalRequest(reqs[0].Data)
			if err != nil || r.Type != wire.RequestJoin || !bytes.Equal(r.Body, wiretest.KeyPackage("B")) {
				t.Fatalf("forwarded request does not carry B's KeyPackage: %v", err)
			}

			commit0 := wiretest.Commit("room", 0, "add B")
			if err := c.Commit(ctx, "room", 0, commit0, wiretest.Welcome("for B")); err != nil {
				t.Fatal(err)
			}
			// A competing commit for epoch 0 loses with the current epoch.
			err = c.Commit(ctx, "room", 0, wiretest.Commit("room", 0, "other"), nil)
			var conflict *EpochConflictError
			if !errors.Is(err, ErrEpochConflict) || !errors.As(err, &conflict) || conflict.Epoch != 1 || conflict.CommitEpoch != 0 {
				t.Fatalf("competing commit: %v", err)
			}
			// The identical commit again (lost response) is a success, not a conflict.
			if err := c.Commit(ctx, "room", 0, commit0, wiretest.Welcome("for B")); err != nil {
				t.Fatalf("retry of the accepted commit: %v", err)
			}
			commits := cs.rec.Track("commit", "room")
			welcomes := cs.rec.Track("welcome", "room")
			if len(commits) != 1 || commits[0].Num != 0 || !bytes.Equal(commits[0].Data, commit0) {
				t.Fatalf("CommitTrack = %+v", commits)
			}
			if len(welcomes) != 1 || welcomes[0].Num != 0 || string(welcomes[0].Data) != string(wiretest.Welcome("for B")) {
				t.Fatalf("WelcomeTrack = %+v", welcomes)
			}
			if err := c.Leave(ctx, "room", wiretest.Handshake("room", 1, wire.ContentTypeProposal, "B leaves")); err != nil {
				t.Fatal(err)
			}
			if err := c.Commit(ctx, "room", 1, wiretest.Commit("room", 1, "remove B"), nil); err != nil {
				t.Fatal(err)
			}
			if e, _ := c.Epoch(ctx, "room"); e != 2 {
				t.Fatalf("epoch = %d, want 2", e)
			}
			// Commit forwarded before Welcome; request seq increments.
			items := cs.rec.Items()
			var order []string
			for _, it := range items {
				order = append(order, fmt.Sprintf("%s/%d", it.Track, it.Num))
			}
			if got := strings.Join(order, " "); got != "request/0 commit/0 welcome/0 request/1 commit/1" {
				t.Fatalf("forwarding order = %s", got)
			}
			buf := metricsText(t, cs.srv.Metrics())
			for _, want := range []string{
				`sframe_cs_http_responses_total{code="409",endpoint="commits"} 1`,
				`sframe_cs_commits_accepted_total 2`,
				`sframe_cs_groups_created_total 1`,
			} {
				if !strings.Contains(buf, want) {
					t.Errorf("metrics lack %q:\n%s", want, buf)
				}
			}
		})
	}
}

func TestServerBadInput(t *testing.T) {
	for name, open := range storeImpls(t) {
		t.Run(name, func(t *testing.T) {
			cs := newTestCS(t, open(t))
			if created, err := cs.client.Join(context.Background(), "g", wiretest.KeyPackage("A")); !created || err != nil {
				t.Fatal(created, err)
			}
			join := func(group string, body []byte) []byte {
				b, _ := (&wire.Request{GroupID: []byte(group), Type: wire.RequestJoin, Body: body}).Marshal()
				return b
			}
			commit := func(group string, epoch uint64, c []byte) []byte {
				b, _ := (&wire.CommitRequest{GroupID: []byte(group), Epoch: epoch, Commit: c}).Marshal()
				return b
			}
			cases := []struct {
				name, path string
				body       []byte
				code       int
				msg        string
			}{
				{"garbage request", "/v1/groups/g/requests", []byte{0xff, 0xff}, 400, "not a valid Request"},
				{"trailing bytes", "/v1/groups/g/requests", append(join("g", wiretest.KeyPackage("x")), 0), 400, "trailing"},
				{"group mismatch", "/v1/groups/g/requests", join("h", wiretest.KeyPackage("x")), 400, "does not match the URL"},
				{"bad keypackage", "/v1/groups/g/requests", join("g", []byte{9, 9, 9}), 400, "KeyPackage version"},
				{"bad group name", "/v1/groups/a%20b/requests", join("a b", wiretest.KeyPackage("x")), 400, "invalid group name"},
				{"too large", "/v1/groups/g/requests", join("g", bytes.Repeat([]byte{0, 1}, 40<<10)), 413, "exceeds"},
				{"garbage commit", "/v1/groups/g/commits", []byte{1}, 400, "not a valid CommitRequest"},
				{"epoch mismatch", "/v1/groups/g/commits", commit("g", 0, wiretest.Commit("g", 3, "x")), 400, "epoch 3"},
				{"not a commit", "/v1/groups/g/commits", commit("g", 0, wiretest.Handshake("g", 0, wire.ContentTypeProposal, "")), 400, "content_type"},
				{"unknown group commit", "/v1/groups/nope/commits", commit("nope", 0, wiretest.Commit("nope", 0, "x")), 404, "does not exist"},
				{"too large commit", "/v1/groups/g/commits", commit("g", 0, append(wiretest.Commit("g", 0, ""), make([]byte, 70<<10)...)), 413, "exceeds"},
			}
			for _, tc := range cases {
				resp, body := cs.post(t, tc.path, tc.body)
				if resp.StatusCode != tc.code || !strings.Contains(body, tc.msg) {
					t.Errorf("%s: %d %s; want %d containing %q", tc.name, resp.StatusCode, body, tc.code, tc.msg)
				}
			}
			if n := len(cs.rec.Items()); n != 0 {
				t.Fatalf("%d items forwarded for bad input", n)
			}
			if e, _ := cs.client.Epoch(context.Background(), "g"); e != 0 {
				t.Fatalf("bad input changed the epoch to %d", e)
			}
		})
	}
}

// 100 joiners race on a fresh group: exactly one 201, 99 forwarded requests
// with distinct sequence numbers 0..98.
func TestServerJoinRace(t *testing.T) {
	for name, open := range storeImpls(t) {
		t.Run(name, func(t *testing.T) {
			cs := newTestCS(t, open(t))
			const n = 100
			var wg sync.WaitGroup
			var created, failed atomic.Int32
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					c, err := cs.client.Join(context.Background(), "race", wiretest.KeyPackage(fmt.Sprint("member-", i)))
					if err != nil {
						failed.Add(1)
						t.Error(err)
					}
					if c {
						created.Add(1)
					}
				}()
			}
			close(start)
			wg.Wait()
			if created.Load() != 1 || failed.Load() != 0 {
				t.Fatalf("%d got 201, %d failed; want exactly one 201", created.Load(), failed.Load())
			}
			reqs := cs.rec.Track("request", "race")
			if len(reqs) != n-1 {
				t.Fatalf("%d requests forwarded, want %d", len(reqs), n-1)
			}
			for i, r := range reqs {
				if r.Num != uint64(i) {
					t.Fatalf("request %d forwarded with seq %d (order broken)", i, r.Num)
				}
			}
		})
	}
}

// 20 committers race for each of 5 epochs: exactly one wins each epoch.
func TestServerCommitRace(t *testing.T) {
	for name, open := range storeImpls(t) {
		t.Run(name, func(t *testing.T) {
			cs := newTestCS(t, open(t))
			ctx := context.Background()
			cs.client.Join(ctx, "g", wiretest.KeyPackage("A"))
			for epoch := uint64(0); epoch < 5; epoch++ {
				var wg sync.WaitGroup
				var won, lost atomic.Int32
				for i := range 20 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						err := cs.client.Commit(ctx, "g", epoch, wiretest.Commit("g", epoch, fmt.Sprint(i)), nil)
						switch {
						case err == nil:
							won.Add(1)
						case errors.Is(err, ErrEpochConflict):
							lost.Add(1)
						default:
							t.Error(err)
						}
					}()
				}
				wg.Wait()
				if won.Load() != 1 || lost.Load() != 19 {
					t.Fatalf("epoch %d: %d won, %d lost", epoch, won.Load(), lost.Load())
				}
			}
			commits := cs.rec.Track("commit", "g")
			if len(commits) != 5 {
				t.Fatalf("%d commits forwarded", len(commits))
			}
			for i, c := range commits {
				if c.Num != uint64(i) {
					t.Fatalf("commit %d forwarded as MoQ group %d", i, c.Num)
				}
			}
		})
	}
}

// When forwarding fails the decision stands (202), nothing is forwarded out
// of order, and Redeliver / the next request publishes the backlog.
func TestServerForwardFailure(t *testing.T) {
	for name, open := range storeImpls(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			cs := newTestCS(t, open(t))
			cs.client.Join(ctx, "g", wiretest.KeyPackage("A"))
			down := errors.New("relay down")
			cs.rec.SetFail(func(track, group string, num uint64) error { return down })
			c0 := wiretest.Commit("g", 0, "c0")
			resp, body := cs.post(t, "/v1/groups/g/commits", mustMarshal(t, &wire.CommitRequest{GroupID: []byte("g"), Epoch: 0, Commit: c0, Welcome: wiretest.Welcome("w")}))
			if resp.StatusCode != http.StatusAccepted || !strings.Contains(body, "forwarding_pending") {
				t.Fatalf("commit with relay down: %d %s", resp.StatusCode, body)
			}
			// The epoch moved even though nothing was published yet.
			if err := cs.client.Commit(ctx, "g", 0, wiretest.Commit("g", 0, "late"), nil); !errors.Is(err, ErrEpochConflict) {
				t.Fatalf("second commit for epoch 0: %v", err)
			}
			if n := len(cs.rec.Items()); n != 0 {
				t.Fatalf("%d items recorded while failing", n)
			}
			if left, err := cs.srv.Redeliver(ctx); err != nil || left != 1 {
				t.Fatalf("Redeliver while down: left=%d err=%v", left, err)
			}
			cs.rec.SetFail(nil)
			// Next accepted commit flushes the backlog first, in order.
			if err := cs.client.Commit(ctx, "g", 1, wiretest.Commit("g", 1, "c1"), nil); err != nil {
				t.Fatal(err)
			}
			var order []string
			for _, it := range cs.rec.Items() {
				order = append(order, fmt.Sprintf("%s/%d", it.Track, it.Num))
			}
			if got := strings.Join(order, " "); got != "commit/0 welcome/0 commit/1" {
				t.Fatalf("order after recovery: %s", got)
			}
			if left, err := cs.srv.Redeliver(ctx); err != nil || left != 0 {
				t.Fatalf("Redeliver after recovery: left=%d err=%v", left, err)
			}
		})
	}
}

func mustMarshal(t *testing.T, m interface{ Marshal() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Restart: stop server and store mid-run, reopen from the same file, and
// check no epoch or request is lost and unforwarded items are redelivered.
func TestServerRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cs.db")
	st, err := store.OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	cs := newTestCS(t, st)
	cs.client.Join(ctx, "g", wiretest.KeyPackage("A"))
	cs.client.Join(ctx, "g", wiretest.KeyPackage("B"))
	for e := uint64(0); e < 3; e++ {
		if err := cs.client.Commit(ctx, "g", e, wiretest.Commit("g", e, fmt.Sprint(e)), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Relay goes down: one more request and commit are decided but not forwarded.
	cs.rec.SetFail(func(string, string, uint64) error { return errors.New("relay down") })
	cs.client.Join(ctx, "g", wiretest.KeyPackage("C"))
	if err := cs.client.Commit(ctx, "g", 3, wiretest.Commit("g", 3, "3"), wiretest.Welcome("C")); err != nil {
		t.Fatal(err)
	}
	cs.http.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st2, err := store.OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	cs2 := newTestCS(t, st2)
	if left, err := cs2.srv.Redeliver(ctx); err != nil || left != 0 {
		t.Fatalf("Redeliver after restart: left=%d err=%v", left, err)
	}
	var order []string
	for _, it := range cs2.rec.Items() {
		order = append(order, fmt.Sprintf("%s/%d", it.Track, it.Num))
	}
	if got := strings.Join(order, " "); got != "request/1 commit/3 welcome/3" {
		t.Fatalf("redelivered after restart: %s", got)
	}
	if e, err := cs2.client.Epoch(ctx, "g"); err != nil || e != 4 {
		t.Fatalf("epoch after restart = %d, %v; want 4", e, err)
	}
	if err := cs2.client.Commit(ctx, "g", 3, wiretest.Commit("g", 3, "other"), nil); !errors.Is(err, ErrEpochConflict) {
		t.Fatalf("stale commit after restart: %v", err)
	}
	if created, err := cs2.client.Join(ctx, "g", wiretest.KeyPackage("D")); created || err != nil {
		t.Fatalf("join after restart: created=%v err=%v", created, err)
	}
	if reqs := cs2.rec.Track("request", "g"); reqs[len(reqs)-1].Num != 2 {
		t.Fatalf("request seq after restart = %d, want 2", reqs[len(reqs)-1].Num)
	}
}

func TestClientRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "localhost:8443", "https://"} {
		if _, err := NewClient(u, nil); err == nil {
			t.Errorf("NewClient(%q) accepted", u)
		}
	}
}

// Measures request and commit latency over TLS with the bbolt store (fsync
// per decision). Run with -bench.
func BenchmarkCommitBolt(b *testing.B) {
	st, err := store.OpenBoltStore(filepath.Join(b.TempDir(), "cs.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	rec := &Recorder{}
	srv, _ := NewServer(Config{Store: st, Forwarder: rec})
	hs := httptest.NewTLSServer(srv)
	defer hs.Close()
	cl, _ := NewClient(hs.URL, hs.Client())
	ctx := context.Background()
	cl.Join(ctx, "bench", wiretest.KeyPackage("A"))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := uint64(i)
		if err := cl.Commit(ctx, "bench", e, wiretest.Commit("bench", e, "c"), nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJoinBolt(b *testing.B) {
	st, err := store.OpenBoltStore(filepath.Join(b.TempDir(), "cs.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	srv, _ := NewServer(Config{Store: st, Forwarder: &Recorder{}})
	hs := httptest.NewTLSServer(srv)
	defer hs.Close()
	cl, _ := NewClient(hs.URL, hs.Client())
	ctx := context.Background()
	cl.Join(ctx, "bench", wiretest.KeyPackage("A"))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cl.Join(ctx, "bench", wiretest.KeyPackage(fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
	}
}

// A committer using staged commits gets the Welcome only after the CS
// accepted the Commit: it resubmits the identical commit with the Welcome.
func TestServerLateWelcome(t *testing.T) {
	ctx := context.Background()
	for name, open := range storeImpls(t) {
		t.Run(name, func(t *testing.T) {
			cs := newTestCS(t, open(t))
			cs.client.Join(ctx, "g", wiretest.KeyPackage("A"))
			c0 := wiretest.Commit("g", 0, "add B")
			if err := cs.client.Commit(ctx, "g", 0, c0, nil); err != nil {
				t.Fatal(err)
			}
			if err := cs.client.Commit(ctx, "g", 0, c0, wiretest.Welcome("B")); err != nil {
				t.Fatalf("late welcome: %v", err)
			}
			// Only the first welcome per epoch is forwarded; a different commit still conflicts.
			if err := cs.client.Commit(ctx, "g", 0, c0, wiretest.Welcome("again")); err != nil {
				t.Fatal(err)
			}
			if err := cs.client.Commit(ctx, "g", 0, wiretest.Commit("g", 0, "x"), wiretest.Welcome("x")); !errors.Is(err, ErrEpochConflict) {
				t.Fatalf("welcome with a different commit: %v", err)
			}
			var order []string
			for _, it := range cs.rec.Items() {
				order = append(order, fmt.Sprintf("%s/%d/%s", it.Track, it.Num, it.Data[4:]))
			}
			if got := strings.Join(order, " "); got != "commit/0/"+string(c0[4:])+" welcome/0/B" {
				t.Fatalf("forwarded: %q", got)
			}
			if e, _ := cs.client.Epoch(ctx, "g"); e != 1 {
				t.Fatalf("epoch %d", e)
			}
		})
	}
}

// The client retries 503 with the identical body and maps 409 without a
// usable epoch to an error that says so.
func TestClientRetryAndConflictParsing(t *testing.T) {
	var calls atomic.Int32
	var bodies [][]byte
	var mu sync.Mutex
	hs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, r.ContentLength)
		r.Body.Read(b)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		switch calls.Add(1) {
		case 1:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case 2:
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusConflict)
		}
	}))
	defer hs.Close()
	cl, _ := NewClient(hs.URL, hs.Client())
	cl.Backoff = time.Millisecond
	ctx := context.Background()
	if err := cl.Commit(ctx, "g", 0, wiretest.Commit("g", 0, "c"), nil); err != nil {
		t.Fatalf("commit after one 503: %v", err)
	}
	if calls.Load() != 2 || !bytes.Equal(bodies[0], bodies[1]) {
		t.Fatalf("%d calls; bodies identical: %v", calls.Load(), bytes.Equal(bodies[0], bodies[1]))
	}
	err := cl.Commit(ctx, "g", 0, wiretest.Commit("g", 0, "c"), nil)
	if err == nil || errors.Is(err, ErrEpochConflict) || !strings.Contains(err.Error(), EpochHeader) {
		t.Fatalf("409 without epoch: %v", err)
	}
}
