// Package etcdtest runs a real etcd cluster for tests: each member is a
// separate etcd process (Debian's etcd-server, installed by
// scripts/setup.sh) listening on loopback, so a test can kill -9 one
// member, including the raft leader, and watch the others carry on.
//
// Without the etcd binary the tests skip with instructions, except when
// CI=true, where they fail: CI must run them.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/moqsframe/moqsframe/internal/proctest"
)

// Binary is the etcd executable looked up on PATH.
const Binary = "etcd"

// Require skips (or, with CI=true, fails) t if etcd is not installed.
func Require(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath(Binary)
	if err == nil {
		return p
	}
	msg := "etcd is not installed: run scripts/setup.sh (Debian package etcd-server) to run the CS-on-etcd tests"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Member is one etcd process.
type Member struct {
	Name      string
	ClientURL string // http://127.0.0.1:port
	peerURL   string
	dir       string
	cmd       *exec.Cmd
	out       *proctest.SyncBuffer
	done      chan struct{}
}

// Cluster is a running etcd cluster.
type Cluster struct {
	Members []*Member
	bin     string
	initial string
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var (
	sharedMu  sync.Mutex
	shared    *Cluster
	sharedErr string
	sharedDir string
)

// Shared returns a three-member cluster started once per test binary, for
// tests that only need a working etcd (each should use its own key
// prefix, e.g. Prefix(t)). Call Main from TestMain to stop it; its members
// also die with the test process (Pdeathsig).
func Shared(t testing.TB) *Cluster {
	t.Helper()
	bin := Require(t)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		return shared
	}
	if sharedErr != "" {
		t.Fatal(sharedErr)
	}
	dir, err := dataDir()
	if err != nil {
		t.Fatal(err)
	}
	sharedDir = dir
	c, err := start(bin, dir, 3)
	if err != nil {
		sharedErr = err.Error()
		t.Fatal(err)
	}
	shared = c
	return c
}

// Main runs the tests, then stops the Shared cluster.
func Main(m *testing.M) {
	code := m.Run()
	sharedMu.Lock()
	if shared != nil {
		for _, mb := range shared.Members {
			mb.Kill()
		}
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	sharedMu.Unlock()
	os.Exit(code)
}

var prefixSeq atomic.Uint64

// Prefix returns a key prefix no other test in this process uses.
func Prefix(t testing.TB) string {
	return fmt.Sprintf("test/%s/%d/", strings.ReplaceAll(t.Name(), "/", "_"), prefixSeq.Add(1))
}

// dataDir makes the members' data directory, in /dev/shm when it exists:
// the tests kill processes, not machines, and a killed process loses
// nothing the kernel already holds, so fsync (tens of milliseconds per
// write on a shared CI disk) buys them nothing.
func dataDir() (string, error) {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "etcdtest-"); err == nil {
			return d, nil
		}
	}
	return os.MkdirTemp("", "etcdtest-")
}

// Start runs an n-member cluster and waits until it has a leader. The
// members are killed and their data removed when the test ends; their
// output is logged if it failed.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	dir, err := dataDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c, err := start(Require(t), dir, n)
	if c != nil {
		t.Cleanup(func() {
			for _, m := range c.Members {
				m.Kill()
				if t.Failed() {
					t.Logf("--- output of etcd %s:\n%s", m.Name, m.out.String())
				}
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func start(bin, dir string, n int) (*Cluster, error) {
	c := &Cluster{bin: bin}
	var initial []string
	for i := range n {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: "http://" + freePort(),
			peerURL:   "http://" + freePort(),
			dir:       filepath.Join(dir, fmt.Sprintf("m%d", i)),
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.peerURL)
	}
	c.initial = strings.Join(initial, ",")
	for _, m := range c.Members {
		if err := c.startMember(m); err != nil {
			return c, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Leader(ctx); err != nil {
		return c, fmt.Errorf("etcd cluster has no leader: %v", err)
	}
	return c, nil
}

func (c *Cluster) startMember(m *Member) error {
	m.out = &proctest.SyncBuffer{}
	m.done = make(chan struct{})
	m.cmd = exec.Command(c.bin,
		"--name", m.Name,
		"--data-dir", m.dir,
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", c.initial,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", "etcdtest",
		// Raft timing for a busy two-core CI machine: fast enough that a
		// leader kill is visible in seconds, slow enough not to flap.
		"--heartbeat-interval", "100",
		"--election-timeout", "1000",
		"--logger", "zap", "--log-level", "warn",
	)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	// The members must not outlive a test binary that crashes.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("start etcd %s: %v", m.Name, err)
	}
	go func() { m.cmd.Wait(); close(m.done) }()
	return nil
}

// Endpoints returns the client URLs of all members (including killed ones,
// as a client configured before the kill would have them).
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Client returns a client of the whole cluster, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Leader returns the index of the member that is the raft leader, asking
// the members until one that is up names a leader.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	var last error
	for {
		for _, m := range c.Members {
			if m.Exited() {
				continue
			}
			id, err := memberLeader(ctx, m.ClientURL)
			if err != nil {
				last = err
				continue
			}
			for i, o := range c.Members {
				if !o.Exited() && o.id(ctx) == id {
					return i, nil
				}
			}
			last = fmt.Errorf("leader %x is not a running member", id)
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func memberLeader(ctx context.Context, url string) (uint64, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := cli.Status(ctx, url)
	if err != nil {
		return 0, err
	}
	if st.Leader == 0 {
		return 0, fmt.Errorf("%s has no leader", url)
	}
	return st.Leader, nil
}

func (m *Member) id(ctx context.Context) uint64 {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := cli.Status(ctx, m.ClientURL)
	if err != nil {
		return 0
	}
	return st.Header.MemberId
}

// Kill sends SIGKILL to the member and waits for it to exit.
func (m *Member) Kill() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	m.cmd.Process.Kill()
	<-m.done
}

// Exited reports whether the member's process has ended.
func (m *Member) Exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// Output returns what the member printed so far.
func (m *Member) Output() string { return m.out.String() }
