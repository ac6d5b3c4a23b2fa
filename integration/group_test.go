package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/group"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/internal/proctest"
	"github.com/moqsframe/moqsframe/moq"
	"github.com/moqsframe/moqsframe/pipeline"
	"github.com/moqsframe/moqsframe/sidecar"
)

const csPkg = "github.com/moqsframe/moqsframe/cmd/sframe-cs"

// groupWait bounds the waits for joins, leaves and convergence: the tests
// wait for the condition, and this only ends a wait that will never be met.
// On two busy cores under -race, 50 members with X.509 validation took up
// to 17 s for a join (p99) and over 40 s for 10 concurrent leaves.
const groupWait = 2 * time.Minute

// groupEnv runs the relay and the CS as separate processes (real QUIC and
// HTTPS on 127.0.0.1), both authenticating with the deployment's CA: the CS
// requires client certificates and authorizes by a policy, the relay lets
// only certified identities announce. Certificates are made by the sframe
// identity tool. The CS publishes the group tracks through the relay and
// keeps its state in a bbolt file, so it can be restarted.
type groupEnv struct {
	t             *testing.T
	relayAddr     string
	csAddr, csURL string
	db            string
	csBin         string
	pki           *pkiDir
	cs            *proctest.Proc
	// admin is a CS client with the CS's own certificate's CA roots and
	// an admitted identity, for reading the archive in checks.
	admin *coord.Client
}

// testPolicy admits anyone the CA certifies to the groups the tests use,
// and only alice, bob and carol to "secure".
const testPolicy = `{"groups": {"room": ["*"], "race": ["*"], "scale": ["*"], "restart": ["*"], "sc": ["*"],
	"secure": ["alice", "bob", "carol", "dave"]}, "max_members": 100}`

func newGroupEnv(t *testing.T) *groupEnv {
	t.Helper()
	e := newRelayEnv(t, proctest.FreeTCPAddr(t))
	e.startCS()
	return e
}

// newRelayEnv is newGroupEnv without starting the CS, which is to listen
// (or be reached) at csAddr.
func newRelayEnv(t *testing.T, csAddr string) *groupEnv {
	t.Helper()
	dir := t.TempDir()
	e := &groupEnv{t: t, db: filepath.Join(dir, "cs.db"), pki: newPKI(t, testPolicy)}
	relayBin := proctest.Build(t, relayPkg)
	e.csBin = proctest.Build(t, csPkg)
	e.relayAddr = proctest.FreeUDPAddr(t)
	metrics := proctest.FreeTCPAddr(t)
	e.pki.issue("relay", "-host", "127.0.0.1,localhost")
	e.pki.issue("cs", "-host", "127.0.0.1,localhost")
	proctest.Start(t, "moq-relay", relayBin, "-listen", e.relayAddr, "-metrics", metrics, "-log-level", "warn",
		"-cert", e.pki.path("relay.pem"), "-key", e.pki.path("relay.key"), "-trust-anchor", e.pki.path("ca.pem"))
	proctest.WaitHTTP(t, "http://"+metrics+"/healthz", 20*time.Second)
	e.csAddr = csAddr
	e.csURL = "https://" + e.csAddr
	e.admin = e.client(e.pki.issue("alice"))
	return e
}

func (e *groupEnv) startCS() {
	e.t.Helper()
	e.cs = proctest.Start(e.t, "sframe-cs", e.csBin,
		"-listen", e.csAddr, "-db", e.db, "-cert", e.pki.path("cs.pem"), "-key", e.pki.path("cs.key"),
		"-trust-anchor", e.pki.path("ca.pem"), "-policy", e.pki.path("policy.json"),
		"-relay", e.relayAddr, "-relay-ca", e.pki.path("ca.pem"), "-redeliver-every", "1s", "-log-level", "warn",
		// The scale test's members each fetch the archive at start.
		"-rate", "200", "-burst", "400")
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, _, err := e.admin.State(context.Background(), "room")
		if err == nil || errors.Is(err, coord.ErrUnknownGroup) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("CS not up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// client is a CS client presenting cert.
func (e *groupEnv) client(cert *identity.Certificate) *coord.Client {
	e.t.Helper()
	cl, err := coord.NewClientTLS(e.csURL, coord.ClientTLS{Certificate: cert, Roots: e.pki.verifier.Roots(), Timeout: 10 * time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	return cl
}

// session is an anonymous MoQ session (subscribing needs no certificate);
// the relay is verified against the CA.
func (e *groupEnv) session() *moq.Session { return e.sessionAs(nil) }

// sessionAs is a MoQ session presenting cert (nil: none), which may
// announce namespaces.
func (e *groupEnv) sessionAs(cert *identity.Certificate) *moq.Session {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := moq.Dial(ctx, e.relayAddr, &moq.Config{TLSConfig: identity.ClientTLS(cert, e.pki.verifier)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

func (e *groupEnv) member(id, name string, sess *moq.Session, mod func(*group.Config)) *group.Member {
	e.t.Helper()
	return e.memberWith(e.pki.issue(id), name, sess, mod)
}

func (e *groupEnv) memberWith(cert *identity.Certificate, name string, sess *moq.Session, mod func(*group.Config)) *group.Member {
	e.t.Helper()
	cfg := group.Config{Certificate: cert, Verifier: e.pki.verifier, Policy: e.pki.policy, Group: name,
		CS: e.client(cert), Session: sess, PollInterval: 500 * time.Millisecond, BackupDelay: time.Second}
	if os.Getenv("GROUP_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := group.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { m.Close() })
	return m
}

// joinAsync joins in the background (no t.Fatal off the test goroutine).
func joinAsync(m *group.Member) <-chan error {
	ch := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), groupWait)
		defer cancel()
		ch <- m.Join(ctx)
	}()
	return ch
}

func joinAll(t *testing.T, ms ...*group.Member) []time.Duration {
	t.Helper()
	lat := make([]time.Duration, len(ms))
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), groupWait)
			defer cancel()
			start := time.Now()
			errs[i] = m.Join(ctx)
			lat[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: join: %v", ms[i].Identity(), err)
		}
	}
	return lat
}

// convergeAll waits until every member is at the same epoch ≥ min with the
// same exported SFrame base key.
func convergeAll(t *testing.T, min uint64, timeout time.Duration, ms ...*group.Member) (uint64, []byte) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var epoch uint64
		var key []byte
		why := ""
		for i, m := range ms {
			ks, err := m.KeyState(context.Background())
			if err != nil {
				why = fmt.Sprintf("%s: %v", m.Identity(), err)
				break
			}
			if i == 0 {
				epoch, key = ks.Epoch, ks.BaseKey
			}
			if ks.Epoch < min || ks.Epoch != epoch || !bytes.Equal(ks.BaseKey, key) {
				why = fmt.Sprintf("%s at epoch %d, %s at %d (min %d)", ms[0].Identity(), epoch, m.Identity(), ks.Epoch, min)
				break
			}
			// MLS moves first; the key schedule gets the epoch right after.
			if l := m.Schedule().Status().Latest; l != ks.Epoch {
				why = fmt.Sprintf("%s: MLS at epoch %d, key schedule at %d", m.Identity(), ks.Epoch, l)
				break
			}
		}
		if why == "" {
			return epoch, key
		}
		if time.Now().After(deadline) {
			t.Fatalf("no convergence: %s", why)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// waitSending waits until m seals with its newest epoch (coordinated
// roll-over: every member acknowledged it, or the timeout passed).
func waitSending(t *testing.T, m *group.Member) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for st := m.Schedule().Status(); st.Send != st.Latest; st = m.Schedule().Status() {
		if time.Now().After(deadline) {
			t.Fatalf("%s still seals with epoch %d, newest is %d", m.Identity(), st.Send, st.Latest)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkMedia seals with from and opens with every member of to; members of
// not must fail.
func checkMedia(t *testing.T, from *group.Member, c uint64, to, not []*group.Member) {
	t.Helper()
	waitSending(t, from)
	st, err := from.Stream(c)
	if err != nil {
		t.Fatal(err)
	}
	md, pt := []byte("md"), []byte("frame from "+from.Identity())
	ct, err := st.Seal(nil, md, pt)
	if err != nil {
		t.Fatalf("%s: seal: %v", from.Identity(), err)
	}
	for _, m := range to {
		if got, err := m.Schedule().Open(nil, md, ct); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("%s cannot open %s's media: %v", m.Identity(), from.Identity(), err)
		}
	}
	for _, m := range not {
		if _, err := m.Schedule().Open(nil, md, ct); err == nil {
			t.Fatalf("%s opened %s's media of an epoch it is not in", m.Identity(), from.Identity())
		}
	}
}

// mediaFlow publishes SFrame objects sealed by sender on a MoQ track through
// the relay and opens them at the receivers with their schedules.
type mediaFlow struct {
	sent, opened, failed atomic.Int64
	mu                   sync.Mutex
	per                  map[string][2]int // identity -> opened, failed
	stop                 context.CancelFunc
	wg                   sync.WaitGroup
}

func startMedia(t *testing.T, e *groupEnv, sender *group.Member, receivers []*group.Member) *mediaFlow {
	t.Helper()
	ns := []string{"media", sender.Identity()}
	pubSess := e.sessionAs(e.pki.issue(sender.Identity()))
	pub, err := pubSess.Publish(ns, "video")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pubSess.Announce(ctx, ns); err != nil {
		t.Fatal(err)
	}
	f := &mediaFlow{per: map[string][2]int{}}
	rctx, stop := context.WithCancel(context.Background())
	f.stop = stop
	for _, r := range receivers {
		sub, err := e.session().Subscribe(ctx, ns, "video")
		if err != nil {
			t.Fatal(err)
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for {
				o, err := sub.ReadObject(rctx)
				if err != nil {
					return
				}
				_, err = r.Schedule().Open(nil, []byte("video"), o.Payload)
				f.mu.Lock()
				c := f.per[r.Identity()]
				if err != nil {
					f.failed.Add(1)
					c[1]++
				} else {
					f.opened.Add(1)
					c[0]++
				}
				f.per[r.Identity()] = c
				f.mu.Unlock()
			}
		}()
	}
	st, err := sender.Stream(7)
	if err != nil {
		t.Fatal(err)
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		frame := bytes.Repeat([]byte{0xab}, 1000)
		for n := uint64(0); ; n++ {
			select {
			case <-rctx.Done():
				return
			case <-tk.C:
			}
			ct, err := st.Seal(nil, []byte("video"), frame)
			if err != nil {
				continue
			}
			if pub.WriteObject(n, 0, 0, ct) == nil {
				f.sent.Add(1)
			}
		}
	}()
	return f
}

func (f *mediaFlow) close() { f.stop(); f.wg.Wait() }

func (f *mediaFlow) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprintf("sent %d; per receiver [opened failed] %v", f.sent.Load(), f.per)
}

func TestGroupJoinLeaveMediaProcesses(t *testing.T) {
	e := newGroupEnv(t)
	sess := e.session()
	a := e.member("alice", "room", sess, nil)
	b := e.member("bob", "room", sess, nil)
	c := e.member("carol", "room", e.session(), nil)
	joinAll(t, a)
	joinAll(t, b)
	joinAll(t, c)
	all := []*group.Member{a, b, c}
	ep, _ := convergeAll(t, 2, 20*time.Second, all...)
	flow := startMedia(t, e, a, []*group.Member{b, c})
	for i, m := range all {
		checkMedia(t, m, uint64(i), slices.DeleteFunc(slices.Clone(all), func(x *group.Member) bool { return x == m }), nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Leave(ctx); err != nil {
		t.Fatalf("bob leave: %v", err)
	}
	ep2, _ := convergeAll(t, ep+1, 20*time.Second, a, c)
	checkMedia(t, a, 0, []*group.Member{c}, []*group.Member{b})
	d := e.member("dave", "room", sess, nil)
	joinAll(t, d)
	ep3, _ := convergeAll(t, ep2+1, 20*time.Second, a, c, d)
	checkMedia(t, d, 1, []*group.Member{a, c}, []*group.Member{b})
	checkMedia(t, c, 2, []*group.Member{a, d}, []*group.Member{b})
	time.Sleep(200 * time.Millisecond)
	flow.close()
	t.Logf("epochs: 3 members %d, after leave %d, after join %d; media over the relay (bob leaves midway): %v",
		ep, ep2, ep3, flow)
	if flow.opened.Load() == 0 {
		t.Fatal("no media opened across the relay")
	}
	for _, m := range []*group.Member{a, c, d} {
		t.Logf("%s: %+v", m.Identity(), m.Stats())
	}
}

func TestGroupCommitRaceProcesses(t *testing.T) {
	e := newGroupEnv(t)
	sess := e.session()
	manual := func(c *group.Config) { c.Manual = true }
	a := e.member("alice", "race", sess, manual)
	b := e.member("bob", "race", sess, manual)
	c := e.member("carol", "race", sess, manual)
	joinAll(t, a)
	joinDone := joinAsync(b)
	waitPendingJoins(t, a, 1)
	if r, err := a.Commit(context.Background()); err != nil || !r.Won {
		t.Fatalf("alice: %+v %v", r, err)
	}
	if err := <-joinDone; err != nil {
		t.Fatal(err)
	}
	convergeAll(t, 1, 10*time.Second, a, b)
	joinDone = joinAsync(c)
	waitPendingJoins(t, a, 1)
	waitPendingJoins(t, b, 1)
	res := make([]group.CommitResult, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, m := range []*group.Member{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); res[i], errs[i] = m.Commit(context.Background()) }()
	}
	wg.Wait()
	t.Logf("alice: %+v %v", res[0], errs[0])
	t.Logf("bob:   %+v %v", res[1], errs[1])
	if errs[0] != nil || errs[1] != nil {
		t.Fatal("commit failed")
	}
	if res[0].Won == res[1].Won || res[0].Conflicts+res[1].Conflicts != 1 {
		t.Fatalf("want exactly one 200 and one 409")
	}
	if err := <-joinDone; err != nil {
		t.Fatal(err)
	}
	ep, key := convergeAll(t, 2, 10*time.Second, a, b, c)
	t.Logf("converged at epoch %d, base key %x…", ep, key[:4])
	checkMedia(t, c, 0, []*group.Member{a, b}, nil)
}

func waitPendingJoins(t *testing.T, m *group.Member, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for m.PendingJoins() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s never saw %d pending join(s)", m.Identity(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// TestGroupScale: 50 members join (in waves of 10) and 10 leave while media
// flows; all converge. Members share 5 QUIC sessions to the relay (10 each).
func TestGroupScale(t *testing.T) {
	if testing.Short() {
		t.Skip("scale test")
	}
	const n, leavers, perSession, wave = 50, 10, 10, 10
	e := newGroupEnv(t)
	var sessions []*moq.Session
	for i := 0; i < n/perSession; i++ {
		sessions = append(sessions, e.session())
	}
	ms := make([]*group.Member, n)
	for i := range ms {
		// A long roll-over timeout: under -race on 2 busy cores a commit can
		// take over 10 s to reach every member (join latency p99 16.4 s in
		// one CI rehearsal), and this test checks that senders wait for all
		// acknowledgements, not how fast they come.
		ms[i] = e.member(fmt.Sprintf("m%02d", i), "scale", sessions[i/perSession],
			func(c *group.Config) { c.RolloverTimeout = 30 * time.Second })
	}
	start := time.Now()
	joinLat := joinAll(t, ms[0])
	var flow *mediaFlow
	for w := 1; w < n; w += wave {
		joinLat = append(joinLat, joinAll(t, ms[w:min(w+wave, n)]...)...)
		if flow == nil {
			flow = startMedia(t, e, ms[0], ms[1:3])
		}
	}
	ep, _ := convergeAll(t, 1, groupWait, ms...)
	joinedIn := time.Since(start)
	t.Logf("50 joined in %v (epoch %d); join latency p50 %v p99 %v", joinedIn.Round(time.Millisecond), ep,
		pct(joinLat, .5).Round(time.Millisecond), pct(joinLat, .99).Round(time.Millisecond))
	// Coordinated roll-over: while members only joined, the sender switched
	// to each new epoch only once every member held it, so no receiver
	// failed to open an object.
	if f := flow.failed.Load(); f != 0 {
		t.Fatalf("during the joins, %d objects could not be opened: %v", f, flow)
	}
	joinFlow := flow.String()
	// 10 leave (not the creator) concurrently.
	leaving := ms[n-leavers:]
	stay := ms[:n-leavers]
	var wg sync.WaitGroup
	errs := make([]error, leavers)
	lstart := time.Now()
	for i, m := range leaving {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), groupWait)
			defer cancel()
			errs[i] = m.Leave(ctx)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s leave: %v", leaving[i].Identity(), err)
		}
	}
	ep2, key := convergeAll(t, ep+1, groupWait, stay...)
	leftIn := time.Since(lstart)
	flow.close()
	checkMedia(t, stay[5], 1, []*group.Member{stay[0], stay[len(stay)-1]}, leaving[:2])

	// Figures from the events.
	type sizeRow struct {
		epoch             uint64
		members, added    int
		commitB, welcomeB int
		rtt               time.Duration
	}
	var rows []sizeRow
	var commitRTT, propagation []time.Duration
	committedAt := map[uint64]time.Time{} // new epoch -> time accepted
	conflicts := 0
	applied := map[uint64][]time.Time{}
	for _, m := range ms {
		for {
			var ev group.Event
			select {
			case ev = <-m.Events():
			default:
			}
			if ev.Type == 0 {
				break
			}
			switch ev.Type {
			case group.EventCommitted:
				rows = append(rows, sizeRow{ev.Epoch - 1, ev.Members, ev.Added, ev.CommitBytes, ev.WelcomeBytes, ev.CommitRTT})
				commitRTT = append(commitRTT, ev.CommitRTT)
				committedAt[ev.Epoch] = ev.Time
			case group.EventEpoch:
				applied[ev.Epoch] = append(applied[ev.Epoch], ev.Time)
			case group.EventConflict:
				conflicts++
			}
		}
		if d := m.DroppedEvents(); d > 0 {
			t.Logf("%s dropped %d events", m.Identity(), d)
		}
	}
	for e, ts := range applied {
		c, ok := committedAt[e]
		if !ok {
			continue
		}
		for _, at := range ts {
			propagation = append(propagation, at.Sub(c))
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].epoch < rows[j].epoch })
	t.Logf("50 joined in %v (final epoch %d); 10 left in %v (epoch %d); base key %x…", joinedIn.Round(time.Millisecond), ep, leftIn.Round(time.Millisecond), ep2, key[:4])
	t.Logf("join latency (Join call → in group, n=%d): p50 %v p99 %v", len(joinLat), pct(joinLat, .5).Round(time.Millisecond), pct(joinLat, .99).Round(time.Millisecond))
	t.Logf("commit latency (stage → CS 200 at the committer, n=%d): p50 %v p99 %v", len(commitRTT), pct(commitRTT, .5).Round(time.Millisecond), pct(commitRTT, .99).Round(time.Millisecond))
	t.Logf("commit propagation (CS 200 at committer → applied at member, n=%d): p50 %v p99 %v", len(propagation), pct(propagation, .5).Round(time.Millisecond), pct(propagation, .99).Round(time.Millisecond))
	t.Logf("commits that lost their epoch (409) and were discarded: %d", conflicts)
	st := ms[0].Schedule().Status()
	t.Logf("media over the relay: during the joins %s; at the end %v", joinFlow, flow)
	t.Logf("sender m00 roll-overs: %d on every member's acknowledgement, %d by timeout, %d at once (removals)",
		st.PromotedQuorum, st.PromotedTimeout, st.PromotedForced)
	t.Logf("commit epoch | members after | added | commit bytes | welcome bytes | stage→200")
	for _, r := range rows {
		t.Logf("%12d | %13d | %5d | %12d | %13d | %v", r.epoch, r.members, r.added, r.commitB, r.welcomeB, r.rtt.Round(time.Millisecond))
	}
	var sum group.Stats
	for _, m := range ms {
		st := m.Stats()
		sum.MoQObjects += st.MoQObjects
		sum.FetchedCommits += st.FetchedCommits
		sum.FetchedWelcomes += st.FetchedWelcomes
		sum.FetchedRequests += st.FetchedRequests
	}
	t.Logf("group objects received on MoQ: %d; fetched from the CS archive: %d commits, %d welcomes, %d requests",
		sum.MoQObjects, sum.FetchedCommits, sum.FetchedWelcomes, sum.FetchedRequests)
}

// TestGroupCSRestart: the CS process is stopped while a leave and a join
// are pending and restarted on the same bbolt file; nothing is lost.
func TestGroupCSRestart(t *testing.T) {
	e := newGroupEnv(t)
	sess := e.session()
	a := e.member("alice", "restart", sess, nil)
	b := e.member("bob", "restart", sess, nil)
	c := e.member("carol", "restart", e.session(), nil)
	joinAll(t, a)
	joinAll(t, b, c)
	ep, _ := convergeAll(t, 1, 20*time.Second, a, b, c)

	if err := e.cs.Stop(t); err != nil {
		t.Logf("CS stop: %v", err)
	}
	// While the CS is down: carol asks to leave, dave asks to join.
	d := e.member("dave", "restart", sess, nil)
	leaveDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), groupWait)
		defer cancel()
		leaveDone <- c.Leave(ctx)
	}()
	joinDone := joinAsync(d)
	time.Sleep(700 * time.Millisecond)
	e.startCS()
	if err := <-leaveDone; err != nil {
		t.Fatalf("carol leave: %v", err)
	}
	if err := <-joinDone; err != nil {
		t.Fatalf("dave join: %v", err)
	}
	// The leave and the join are committed together or one after the other:
	// carol saw her removal, but alice may not have applied it yet.
	var ids []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		ids, err = a.Members(context.Background())
		if err == nil && len(ids) == 3 && !slices.Contains(ids, "carol") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after carol left and dave joined: members %q (%v)", ids, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	ks, _ := a.KeyState(context.Background())
	ep2, _ := convergeAll(t, ks.Epoch, 30*time.Second, a, b, d)
	checkMedia(t, d, 0, []*group.Member{a, b}, []*group.Member{c})

	// A second restart between two commits.
	e.cs.Stop(t)
	e.startCS()
	f := e.member("frank", "restart", e.session(), nil) // a fresh session after the restart
	joinAll(t, f)
	ep3, _ := convergeAll(t, ep2+1, 30*time.Second, a, b, d, f)

	cl := e.admin
	csEpoch, nextSeq, err := cl.State(context.Background(), "restart")
	if err != nil {
		t.Fatal(err)
	}
	if csEpoch != ep3 {
		t.Fatalf("CS epoch %d, members at %d", csEpoch, ep3)
	}
	for x := uint64(0); x < csEpoch; x++ {
		if _, err := cl.CommitAt(context.Background(), "restart", x); err != nil {
			t.Fatalf("commit of epoch %d missing from the CS: %v", x, err)
		}
	}
	for s := uint64(0); s < nextSeq; s++ {
		if _, err := cl.RequestAt(context.Background(), "restart", s); err != nil {
			t.Fatalf("request %d missing from the CS: %v", s, err)
		}
	}
	t.Logf("epochs %d → %d → %d across two CS restarts; CS epoch %d, %d requests, all archived", ep, ep2, ep3, csEpoch, nextSeq)
	for _, m := range []*group.Member{a, b, d, f} {
		t.Logf("%s: %+v", m.Identity(), m.Stats())
	}
}

// TestGroupKeysSidecar: the sidecar's group key source seals per track with
// distinct KID contexts and opens other members' objects; sframe-sidecar
// refuses -key-file together with -cs.
func TestGroupKeysSidecar(t *testing.T) {
	e := newGroupEnv(t)
	sess := e.session()
	a := e.member("alice", "sc", sess, nil)
	b := e.member("bob", "sc", sess, nil)
	joinAll(t, a)
	joinAll(t, b)
	convergeAll(t, 1, 20*time.Second, a, b)
	waitSending(t, a)
	ka, kb := sidecar.NewGroupKeys(a), sidecar.NewGroupKeys(b)
	video, _ := pipeline.NewTrack([]string{"live"}, "video")
	audio, _ := pipeline.NewTrack([]string{"live"}, "audio")
	sv, err := ka.Sealer(video)
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := ka.Sealer(audio)
	ob, _ := kb.Opener(video)
	kids := map[string]bool{}
	for _, s := range []pipeline.Sealer{sv, sa} {
		ct, err := s.Seal(nil, []byte("md"), []byte("payload"))
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := ob.Open(nil, []byte("md"), ct); err != nil || string(pt) != "payload" {
			t.Fatalf("bob cannot open: %v", err)
		}
		kids[fmt.Sprintf("%x", ct[:3])] = true
	}
	if len(kids) != 2 {
		t.Fatalf("two tracks share a KID prefix: %v", kids)
	}

	out, err := exec.Command(proctest.Build(t, sidecarPkg), "-mode", "decrypt", "-namespace", "x",
		"-key-file", "k.json", "-cs", e.csURL, "-group", "g", "-identity-cert", "i.pem", "-metrics", "").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "mutually exclusive") {
		t.Fatalf("sframe-sidecar with -key-file and -cs: %v\n%s", err, out)
	}
}
