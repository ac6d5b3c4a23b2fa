package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/coord/moqforward"
	"github.com/moqsframe/moqsframe/coord/wire/wiretest"
	"github.com/moqsframe/moqsframe/group"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/internal/etcdtest"
	"github.com/moqsframe/moqsframe/internal/proctest"
)

// etcdEnv is groupEnv with the CS replicated: a three-member etcd cluster
// (separate etcd processes), n sframe-cs processes on it with
// -store etcd:..., and a round-robin TCP balancer in front of them whose
// address is groupEnv.csURL (every member's CS client goes through it).
type etcdEnv struct {
	*groupEnv
	etcd     *etcdtest.Cluster
	replicas []*proctest.Proc
	addrs    []string // the replicas' own HTTPS addresses
	lb       *roundRobin
}

func newEtcdEnv(t *testing.T, n int) *etcdEnv {
	t.Helper()
	etcdtest.Require(t)
	lb := newRoundRobin(t)
	e := &etcdEnv{groupEnv: newRelayEnv(t, lb.addr()), lb: lb}
	e.etcd = etcdtest.Start(t, 3)
	for i := range n {
		addr := proctest.FreeTCPAddr(t)
		e.addrs = append(e.addrs, addr)
		e.replicas = append(e.replicas, proctest.Start(t, fmt.Sprintf("sframe-cs-%d", i), e.csBin,
			"-listen", addr, "-store", "etcd:"+strings.Join(e.etcd.Endpoints(), ","),
			"-replica-name", fmt.Sprintf("cs%d", i), "-etcd-lease-ttl", "5s",
			"-cert", e.pki.path("cs.pem"), "-key", e.pki.path("cs.key"),
			"-trust-anchor", e.pki.path("ca.pem"), "-policy", e.pki.path("policy.json"),
			"-relay", e.relayAddr, "-relay-ca", e.pki.path("ca.pem"), "-redeliver-every", "1s", "-log-level", "warn",
			"-rate", "200", "-burst", "400"))
	}
	lb.set(e.addrs)
	for i, addr := range e.addrs {
		cl := e.replicaClient(i, e.pki.issue(fmt.Sprintf("probe%d", i)))
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, _, err := cl.State(context.Background(), "room")
			if err == nil || errors.Is(err, coord.ErrUnknownGroup) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CS replica %d at %s not up: %v", i, addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return e
}

// replicaClient is a CS client of replica i only (not the balancer).
func (e *etcdEnv) replicaClient(i int, cert *identity.Certificate) *coord.Client {
	e.t.Helper()
	cl, err := coord.NewClientTLS("https://"+e.addrs[i], coord.ClientTLS{Certificate: cert, Roots: e.pki.verifier.Roots(), Timeout: 10 * time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	return cl
}

// forwarder returns the index of the replica that won the forwarder
// election (the oldest key under the election prefix).
func (e *etcdEnv) forwarder(ctx context.Context) (int, error) {
	cli := e.etcd.Client(e.t)
	resp, err := cli.Get(ctx, "moqsframe/cs/forwarder/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
	if err != nil {
		return -1, err
	}
	if len(resp.Kvs) == 0 {
		return -1, errors.New("no forwarder elected")
	}
	var i int
	if _, err := fmt.Sscanf(string(resp.Kvs[0].Value), "cs%d", &i); err != nil {
		return -1, fmt.Errorf("election value %q: %v", resp.Kvs[0].Value, err)
	}
	return i, nil
}

// roundRobin is a TCP load balancer (TLS passes through): each new
// connection goes to the next backend that accepts it.
type roundRobin struct {
	ln       net.Listener
	mu       sync.Mutex
	backends []string
	next     int
	conns    map[net.Conn]bool
	wg       sync.WaitGroup
}

func newRoundRobin(t *testing.T) *roundRobin {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &roundRobin{ln: ln, conns: map[net.Conn]bool{}}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *roundRobin) addr() string { return b.ln.Addr().String() }

func (b *roundRobin) set(backends []string) {
	b.mu.Lock()
	b.backends = backends
	b.mu.Unlock()
}

func (b *roundRobin) track(c net.Conn, on bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if on {
		b.conns[c] = true
	} else {
		delete(b.conns, c)
	}
	return true
}

func (b *roundRobin) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.track(c, true)
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer b.track(c, false)
			defer c.Close()
			b.mu.Lock()
			backends, start := b.backends, b.next
			b.next++
			b.mu.Unlock()
			var up net.Conn
			for i := range backends {
				d, err := net.DialTimeout("tcp", backends[(start+i)%len(backends)], time.Second)
				if err == nil {
					up = d
					break
				}
			}
			if up == nil {
				return
			}
			b.track(up, true)
			defer b.track(up, false)
			defer up.Close()
			done := make(chan struct{})
			go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); close(done) }()
			io.Copy(c, up)
			c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// TestEtcdJoinRaceProcesses: 100 first join requests for one group race
// through three CS replicas on one etcd cluster, each to a replica of its
// own (i mod 3): exactly one 201, the other 99 get distinct sequence
// numbers 0..98, all archived.
func TestEtcdJoinRaceProcesses(t *testing.T) {
	e := newEtcdEnv(t, 3)
	const n = 100
	// Issued in process (the CLI would take a minute for 100 under -race).
	ca, err := identity.LoadCA(e.pki.dir)
	if err != nil {
		t.Fatal(err)
	}
	certs := make([]*identity.Certificate, n)
	for i := range n {
		leaf, key, err := ca.Issue(fmt.Sprintf("j%03d", i), identity.IssueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		certs[i] = &identity.Certificate{Chain: [][]byte{leaf.Raw}, Leaf: leaf, Key: key}
	}
	var wg sync.WaitGroup
	var created, failed atomic.Int32
	start := make(chan struct{})
	for i := range n {
		cl := e.replicaClient(i%3, certs[i])
		pub, err := certs[i].Key.PublicKey.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		kp := wiretest.KeyPackageX509(pub.Bytes(), certs[i].Chain...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := cl.Join(context.Background(), "race", kp)
			if err != nil {
				failed.Add(1)
				t.Errorf("j%03d via replica %d: %v", i, i%3, err)
			}
			if c {
				created.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if created.Load() != 1 || failed.Load() != 0 {
		t.Fatalf("%d joins got 201, %d failed; want exactly one 201", created.Load(), failed.Load())
	}
	epoch, next, err := e.admin.State(context.Background(), "race")
	if err != nil || epoch != 0 || next != n-1 {
		t.Fatalf("state: epoch %d, next seq %d, %v; want 0, %d", epoch, next, err, n-1)
	}
	for s := range uint64(n - 1) {
		if _, err := e.admin.RequestAt(context.Background(), "race", s); err != nil {
			t.Fatalf("request %d not archived: %v", s, err)
		}
	}
	t.Logf("100 racing first joins over 3 replicas: 1 × 201, 99 requests with seq 0..98")
}

// commitWatch subscribes to the group's CommitTrack through the relay and
// checks, within each subscription, that commits arrive in epoch order:
// an epoch is either the next one or one seen before (a duplicate after a
// forwarder takeover), never a new epoch out of order and never a gap. A
// subscription that ends (its upstream forwarder died) is renewed; a new
// subscription may start anywhere (the tracks are LIVE).
type commitWatch struct {
	mu                  sync.Mutex
	subs, objects, dups int
	violations          []string
	stop                context.CancelFunc
	done                chan struct{}
}

func watchCommits(t *testing.T, e *groupEnv, grp string) *commitWatch {
	w := &commitWatch{done: make(chan struct{})}
	ctx, stop := context.WithCancel(context.Background())
	w.stop = stop
	sess := e.session()
	ns := moqforward.Namespace(moqforward.DefaultPrefix, grp)
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			sub, err := sess.Subscribe(sctx, ns, moqforward.TrackCommit)
			cancel()
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			w.mu.Lock()
			w.subs++
			w.mu.Unlock()
			seen := map[uint64]bool{}
			var top uint64
			for {
				o, err := sub.ReadObject(ctx)
				if err != nil {
					break
				}
				w.mu.Lock()
				w.objects++
				switch ep := o.GroupID; {
				case len(seen) == 0 || ep == top+1:
					top = max(top, ep)
				case seen[ep]:
					w.dups++
				default:
					w.violations = append(w.violations, fmt.Sprintf("subscription %d: epoch %d after %d", w.subs, ep, top))
				}
				seen[o.GroupID] = true
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *commitWatch) subscriptions() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.subs
}

func (w *commitWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.objects
}

func (w *commitWatch) close() {
	w.stop()
	<-w.done
}

// pauseMeter records the longest time a counter did not grow.
type pauseMeter struct {
	mu      sync.Mutex
	longest time.Duration
	at      time.Time // when the longest pause ended
	stop    context.CancelFunc
	done    chan struct{}
}

func measurePauses(read func() uint64) *pauseMeter {
	ctx, stop := context.WithCancel(context.Background())
	p := &pauseMeter{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		last, since := read(), time.Now()
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			if v := read(); v != last {
				now := time.Now()
				p.mu.Lock()
				if d := now.Sub(since); d > p.longest {
					p.longest, p.at = d, now
				}
				p.mu.Unlock()
				last, since = v, now
			}
		}
	}()
	return p
}

func (p *pauseMeter) result() time.Duration {
	p.stop()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.longest
}

// TestEtcdFailoverProcesses: 20 members join and 10 leave one group
// through three CS replicas behind a round-robin balancer while media
// flows; mid-run the etcd raft leader is killed with SIGKILL, later the CS
// replica that forwards to MoQ. No epoch is lost (the CS archive has every
// commit, the members agree on the epoch and key), no commit is forwarded
// out of order, media keeps decrypting. It prints the longest pause
// between commits (as the creator saw them) and in media.
func TestEtcdFailoverProcesses(t *testing.T) {
	e := newEtcdEnv(t, 3)
	ctx := context.Background()
	watch := watchCommits(t, e.groupEnv, "room")
	defer watch.close()
	var ms []*group.Member
	for i := range 20 {
		sess := e.session()
		ms = append(ms, e.member(fmt.Sprintf("m%02d", i), "room", sess, func(c *group.Config) { c.RolloverTimeout = 3 * time.Second }))
	}
	joinAll(t, ms[0])
	joinAll(t, ms[1:10]...)
	convergeAll(t, 1, groupWait, ms[:10]...)
	flow := startMedia(t, e.groupEnv, ms[0], ms[1:3])
	defer flow.close()
	commits := measurePauses(func() uint64 { return ms[0].Epoch() })
	media := measurePauses(func() uint64 { return uint64(flow.opened.Load()) })
	start := time.Now()
	leavers := []*group.Member{ms[3], ms[4], ms[5], ms[6], ms[7], ms[8], ms[9], ms[10], ms[11], ms[12]}
	var killedEtcd, killedCS string
	var csKilledAt time.Time
	var subsAtKill int
	var openedAtKill [2]int64
	for k := range 9 {
		switch k {
		case 1:
			i, err := e.etcd.Leader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			e.etcd.Members[i].Kill()
			killedEtcd = e.etcd.Members[i].Name
			openedAtKill[0] = flow.opened.Load()
			t.Logf("%v: killed the etcd leader %s", time.Since(start).Round(time.Millisecond), killedEtcd)
		case 3:
			i, err := e.forwarder(ctx)
			if err != nil {
				t.Fatal(err)
			}
			e.replicas[i].Kill()
			killedCS = e.replicas[i].Name
			csKilledAt = time.Now()
			subsAtKill = watch.subscriptions()
			openedAtKill[1] = flow.opened.Load()
			t.Logf("%v: killed the forwarding CS replica %s", time.Since(start).Round(time.Millisecond), killedCS)
		}
		joinAll(t, ms[10+k])
		lctx, cancel := context.WithTimeout(ctx, groupWait)
		if err := leavers[k].Leave(lctx); err != nil {
			cancel()
			t.Fatalf("%s leave: %v", leavers[k].Identity(), err)
		}
		cancel()
	}
	// The relay's subscriptions to the killed replica end when QUIC
	// notices it is gone (its idle timeout); the watcher then subscribes
	// again, now served by the new forwarder. The last join and leave are
	// made after that, so the subscriber sees the new forwarder's commits.
	commitPause := commits.result()
	waitSubs := time.Now()
	for watch.subscriptions() <= subsAtKill {
		if time.Since(waitSubs) > time.Minute {
			t.Fatal("the CommitTrack subscription was not renewed after the forwarder died")
		}
		time.Sleep(50 * time.Millisecond)
	}
	renewed := time.Since(csKilledAt)
	before := watch.count()
	fwdBefore, err := e.forwarder(ctx)
	if err != nil {
		t.Fatal(err)
	}
	joinAll(t, ms[19])
	lctx, cancel := context.WithTimeout(ctx, groupWait)
	if err := leavers[9].Leave(lctx); err != nil {
		cancel()
		t.Fatalf("%s leave: %v", leavers[9].Identity(), err)
	}
	cancel()
	stay := slices.Concat(ms[:3], ms[13:])
	epoch, _ := convergeAll(t, 1, groupWait, stay...)
	churn := time.Since(start)
	mediaPause := media.result()
	for watch.count() < before+2 {
		if time.Since(waitSubs) > 2*time.Minute {
			// LIVE tracks: if yet another replica took over meanwhile,
			// the subscriber may miss commits (members fetch them from
			// the archive); with the same forwarder it must not.
			if f, err := e.forwarder(ctx); err == nil && f == fwdBefore {
				t.Fatalf("the forwarder's commits did not reach the CommitTrack subscriber (%d objects)", watch.count())
			}
			t.Logf("forwarder changed again during the last commits; CommitTrack has %d objects", watch.count())
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkMedia(t, ms[19], 0, stay[:len(stay)-1], leavers)
	if o := flow.opened.Load(); o <= openedAtKill[1] {
		t.Fatalf("no media opened after the CS replica was killed (%d before, %d now)", openedAtKill[1], o)
	}
	csEpoch, nextSeq, err2 := e.admin.State(ctx, "room")
	if err2 != nil || csEpoch != epoch {
		t.Fatalf("CS at epoch %d (%v), members at %d", csEpoch, err2, epoch)
	}
	for x := range csEpoch {
		if _, err := e.admin.CommitAt(ctx, "room", x); err != nil {
			t.Fatalf("commit of epoch %d missing from the CS: %v", x, err)
		}
	}
	watch.close()
	watch.mu.Lock()
	defer watch.mu.Unlock()
	if len(watch.violations) > 0 {
		t.Fatalf("commits forwarded out of order: %v", watch.violations)
	}
	fwd, err := e.forwarder(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("20 joined, 10 left in %v across kill -9 of etcd leader %s and forwarding CS %s (now cs%d forwards); epoch %d, %d requests, every commit archived",
		churn.Round(time.Millisecond), killedEtcd, killedCS, fwd, epoch, nextSeq)
	t.Logf("CommitTrack via the relay: %d objects over %d subscriptions (renewed %v after the CS kill), %d duplicates, 0 out of order",
		watch.objects, watch.subs, renewed.Round(time.Millisecond), watch.dups)
	t.Logf("longest pause: commits %v (during the 18 joins and leaves around the kills), media %v (whole run); media %v",
		commitPause.Round(time.Millisecond), mediaPause.Round(time.Millisecond), flow)
}
