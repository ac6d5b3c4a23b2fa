// Package proctest runs the project's commands as real processes in
// integration tests: build once, start, wait until healthy, read
// /metrics, and stop with SIGTERM. Output is shown only when a test fails.
package proctest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildMu  sync.Mutex
	builtDir string
	built    = map[string]string{}
)

// Main runs the tests and then removes the binaries Build made; call it
// from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	buildMu.Lock()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	buildMu.Unlock()
	os.Exit(code)
}

// Build compiles the main package pkg (e.g.
// "github.com/moqsframe/moqsframe/cmd/moq-relay") once per test binary and
// returns the executable's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	return BuildTags(t, pkg, "")
}

// BuildTags is Build with the build tags tags (comma-separated; "" for
// none). Each (pkg, tags) pair is built once.
func BuildTags(t testing.TB, pkg, tags string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := pkg + " " + tags
	if p, ok := built[key]; ok {
		return p
	}
	if builtDir == "" {
		d, err := os.MkdirTemp("", "proctest-bin-")
		if err != nil {
			t.Fatal(err)
		}
		builtDir = d
	}
	out := filepath.Join(builtDir, filepath.Base(pkg))
	if tags != "" {
		out += "-" + strings.ReplaceAll(tags, ",", "-")
	}
	args := []string{"build", "-o", out, "-tags", tags}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	built[key] = out
	return out
}

// FreeUDPAddr returns a loopback UDP address that was free a moment ago.
func FreeUDPAddr(t testing.TB) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// FreeTCPAddr returns a loopback TCP address that was free a moment ago.
func FreeTCPAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Proc is a running command.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	out  *SyncBuffer
	done chan struct{}
	err  error
}

// SyncBuffer is a bytes.Buffer that a process (or a command's goroutines)
// may write while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start runs bin with args. When the test ends the process is stopped with
// SIGTERM and must exit 0 (graceful shutdown) without a race report (the
// commands are built with -race when the tests are); its output is logged
// if the test failed.
func Start(t testing.TB, name, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, cmd: exec.Command(bin, args...), out: &SyncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if !p.Exited() {
			if err := p.Stop(t); err != nil {
				t.Errorf("%s: exit after SIGTERM: %v", name, err)
			}
		}
		if strings.Contains(p.out.String(), "DATA RACE") {
			t.Errorf("%s: race detected in the process", name)
		}
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", name, p.out.String())
		}
	})
	return p
}

// WaitHealthy is WaitHTTP that fails at once if the process exits first.
func (p *Proc) WaitHealthy(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if p.Exited() {
			t.Fatalf("%s exited before %s was healthy: %v", p.Name, url, p.err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not healthy after %v", p.Name, url, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Output returns what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits up to 15 s (then kills). It returns the
// process's exit error; stopping twice is harmless.
func (p *Proc) Stop(t testing.TB) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Errorf("%s did not stop on SIGTERM within 15 s; killing", p.Name)
		p.cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// Kill sends SIGKILL (no shutdown, no connection close: a crash) and
// waits for the process to end.
func (p *Proc) Kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// HTTPStatus returns the status code of a GET of url, or 0 if it failed.
func HTTPStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// WaitHTTP polls url until it answers 200, failing the test after timeout.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy after %v (last error %v)", url, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Metrics fetches a Prometheus text page and returns its unlabelled samples
// and histogram sub-series (name{labels} as written) by name.
func Metrics(t testing.TB, url string) map[string]float64 {
	t.Helper()
	m, err := fetchMetrics(url)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return m
}

func fetchMetrics(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return nil, fmt.Errorf("%s: content type %q, want Prometheus text", url, ct)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// WaitMetric polls url until metric name reaches at least want; the
// server may not be up yet.
func WaitMetric(t testing.TB, url, name string, want float64, timeout time.Duration) float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m, err := fetchMetrics(url)
		v := m[name]
		if err == nil && v >= want {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s = %v after %v, want >= %v (last error %v)", url, name, v, timeout, want, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RequireCommand fails the test with instructions if name is not on PATH.
func RequireCommand(t testing.TB, name, install string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed: %s", name, install)
	}
}

// String describes the process for logs.
func (p *Proc) String() string { return fmt.Sprintf("%s (pid %d)", p.Name, p.cmd.Process.Pid) }
