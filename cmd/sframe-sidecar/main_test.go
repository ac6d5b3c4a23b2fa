package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/cmd/internal/cli"
	"github.com/moqsframe/moqsframe/cmd/internal/cli/clitest"
	"github.com/moqsframe/moqsframe/internal/proctest"
	"github.com/moqsframe/moqsframe/internal/testpki"
	"github.com/moqsframe/moqsframe/moq"
	"github.com/moqsframe/moqsframe/relay"
	"github.com/moqsframe/moqsframe/sidecar"
)

var env = clitest.Env

func TestParseRTPSource(t *testing.T) {
	base := []string{"-namespace", "a", "-key-file", "k.json", "-rtp-video", "127.0.0.1:5004"}
	for _, tc := range []struct{ arg, want string }{
		{"127.0.0.1", "127.0.0.1:0"}, {"127.0.0.1:5000", "127.0.0.1:5000"}, {"::1", "[::1]:0"}, {"[::1]:7", "[::1]:7"},
	} {
		c, err := parseFlags(append([]string{"-rtp-source", tc.arg}, base...), env())
		if err != nil || c.RTPSource.String() != tc.want {
			t.Errorf("-rtp-source %s: %v, %v; want %s", tc.arg, c.RTPSource, err, tc.want)
		}
	}
	if _, err := parseFlags(append([]string{"-rtp-source", "encoder.local"}, base...), env()); err == nil || !strings.Contains(err.Error(), "-rtp-source") {
		t.Errorf("a host name: %v", err)
	}
	if c, err := parseFlags(append([]string{"-video-codec", "vp9"}, base...), env()); err != nil || c.VideoCodec != sidecar.VP9 {
		t.Errorf("-video-codec vp9: %v, %v", c.VideoCodec, err)
	}
	if _, err := parseFlags(append([]string{"-video-codec", "av1"}, base...), env()); err == nil || !strings.Contains(err.Error(), "-video-codec") {
		t.Errorf("-video-codec av1: %v", err)
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	c, err := parseFlags([]string{"-namespace", "example.org/live", "-key-file", "k.json", "-rtp-video", "127.0.0.1:5004"}, env())
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != sidecar.Encrypt || c.Relay != "127.0.0.1:4443" || !slices.Equal(c.Namespace, []string{"example.org", "live"}) ||
		!slices.Equal(c.SourceNamespace, c.Namespace) || !slices.Equal(c.Tracks, []string{"video"}) ||
		!slices.Equal(c.GroupPrefix, []string{"moqsframe", "cs"}) || c.Metrics != "" || c.LogLevel != slog.LevelInfo || c.VideoCodec != sidecar.H264 ||
		c.RelayTimeout != 5*time.Second || c.ReconnectBuffer != sidecar.DefaultReconnectBuffer || c.ReconnectBufferBytes != sidecar.DefaultReconnectBufferBytes ||
		c.MaxObjectSize != 4<<20 || c.ReplayWindow != sidecar.DefaultReplayWindow || c.DrainTimeout != 10*time.Second || c.Insecure {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestParseFlags(t *testing.T) {
	enc := []string{"-namespace", "a/b", "-key-file", "k.json", "-rtp-video", "127.0.0.1:5004"}
	group := []string{"-namespace", "a", "-mode", "decrypt", "-out-file", "o.rec", "-cs", "https://cs", "-group", "g",
		"-identity-cert", "i.pem", "-identity-key", "i.key", "-trust-anchor", "ca.pem"}
	clitest.RunParse(t, parseFlags, []clitest.ParseCase[Config]{
		{Name: "no namespace", Args: []string{"-key-file", "k.json", "-rtp-video", ":1"}, WantErr: "-namespace is required"},
		{Name: "empty namespace", Args: []string{"-namespace", "/", "-key-file", "k.json", "-rtp-video", ":1"}, WantErr: "-namespace is required"},
		{Name: "unknown mode", Args: append([]string{"-mode", "sideways"}, enc...), WantErr: `-mode must be encrypt or decrypt, not "sideways"`},
		{Name: "key-file with cs", Args: append([]string{"-cs", "https://cs"}, enc...), WantErr: "mutually exclusive"},
		{Name: "no keys", Args: []string{"-namespace", "a", "-rtp-video", ":1"}, WantErr: "keys: pass -key-file"},
		{Name: "cs without group flags", Args: []string{"-namespace", "a", "-rtp-video", ":1", "-cs", "https://cs", "-group", "g"}, WantErr: "-cs needs -group"},
		{Name: "encrypt without input", Args: []string{"-namespace", "a", "-key-file", "k.json"}, WantErr: "encrypt mode needs an input"},
		{Name: "decrypt without output", Args: []string{"-mode", "decrypt", "-namespace", "a", "-key-file", "k.json"}, WantErr: "decrypt mode needs an output"},
		{Name: "bad duration", Args: append([]string{"-drain-timeout", "soon"}, enc...), WantErr: `invalid value "soon" for flag -drain-timeout`},
		{Name: "bad int", Args: append([]string{"-workers", "many"}, enc...), WantErr: "-workers"},
		{Name: "bad log level", Args: append([]string{"-log-level", "loud"}, enc...), WantErr: "bad -log-level"},
		{Name: "unknown flag", Args: []string{"-no-such-flag"}, WantErr: "flag provided but not defined: -no-such-flag"},
		{Name: "stray argument", Args: append(enc, "stray"), WantErr: `unexpected argument "stray"`},
		{Name: "bad env duration", Args: enc, Env: env("SFRAME_SIDECAR_DRAIN_TIMEOUT", "soon"), WantErr: `bad $SFRAME_SIDECAR_DRAIN_TIMEOUT "soon"`},
		{Name: "bad env bool", Args: enc, Env: env("SFRAME_SIDECAR_INSECURE", "maybe"), WantErr: "$SFRAME_SIDECAR_INSECURE"},
		{Name: "env overrides default", Args: enc,
			Env: env("SFRAME_SIDECAR_RELAY", "10.0.0.1:4443", "SFRAME_SIDECAR_DRAIN_TIMEOUT", "3s", "SFRAME_SIDECAR_INSECURE", "true", "SFRAME_SIDECAR_LOG_LEVEL", "debug", "SFRAME_SIDECAR_METRICS", ":1"),
			Check: func(c Config) bool {
				return c.Relay == "10.0.0.1:4443" && c.DrainTimeout == 3*time.Second && c.Insecure && c.LogLevel == slog.LevelDebug && c.Metrics == ":1"
			}},
		{Name: "flag wins over env", Args: append([]string{"-relay", "127.0.0.2:4443", "-mode", "encrypt"}, enc...),
			Env:   env("SFRAME_SIDECAR_RELAY", "10.0.0.1:4443", "SFRAME_SIDECAR_MODE", "decrypt"),
			Check: func(c Config) bool { return c.Relay == "127.0.0.2:4443" && c.Mode == sidecar.Encrypt }},
		{Name: "empty env is unset", Args: enc, Env: env("SFRAME_SIDECAR_RELAY", ""),
			Check: func(c Config) bool { return c.Relay == "127.0.0.1:4443" }},
		{Name: "everything from env", Args: nil,
			Env: env("SFRAME_SIDECAR_NAMESPACE", "x/y", "SFRAME_SIDECAR_KEY_FILE", "k.json", "SFRAME_SIDECAR_MODE", "decrypt",
				"SFRAME_SIDECAR_TRACKS", "video, audio", "SFRAME_SIDECAR_OUT_FILE", "o.rec", "SFRAME_SIDECAR_SOURCE_NAMESPACE", "p/q"),
			Check: func(c Config) bool {
				return c.Mode == sidecar.Decrypt && slices.Equal(c.Namespace, []string{"x", "y"}) && c.KeyFile == "k.json" &&
					slices.Equal(c.Tracks, []string{"video", "audio"}) && c.OutFile == "o.rec" && slices.Equal(c.SourceNamespace, []string{"p", "q"})
			}},
		{Name: "group mode", Args: group, Check: func(c Config) bool {
			return c.CS == "https://cs" && c.Group == "g" && c.KeyFile == "" && c.TrustAnchor == "ca.pem" && c.Mode == sidecar.Decrypt
		}},
	})
}

func TestHelp(t *testing.T) {
	_, err := parseFlags([]string{"-h"}, env())
	var h *cli.Help
	if !errors.Is(err, flag.ErrHelp) || !errors.As(err, &h) {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{"usage: sframe-sidecar", "-key-file", "[$SFRAME_SIDECAR_KEY_FILE]", "[$SFRAME_SIDECAR_LOG_LEVEL]", "-drain-timeout"} {
		if !strings.Contains(h.Usage, want) {
			t.Errorf("usage lacks %q:\n%s", want, h.Usage)
		}
	}
	var stdout, stderr strings.Builder
	if code := cli.Exit(context.Background(), "sframe-sidecar", []string{"-h"}, env(), &stdout, &stderr, parseFlags, run); code != 0 || stderr.Len() != 0 || !strings.Contains(stdout.String(), "$SFRAME_SIDECAR_MODE") {
		t.Fatalf("-h: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := cli.Exit(context.Background(), "sframe-sidecar", []string{"-mode", "x"}, env(), &stdout, &stderr, parseFlags, run); code != 2 || stdout.Len() != 0 ||
		strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "sframe-sidecar -h") {
		t.Fatalf("bad flag: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// An encrypting sidecar reads plaintext objects from the relay (-source)
// and publishes them encrypted; a decrypting one reads those back into a
// file. Both run in-process against an in-process relay and stop cleanly
// when their context ends.
func TestRunEncryptDecrypt(t *testing.T) {
	tlsConf, err := moq.DevTLSConfig("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{Addr: "127.0.0.1:0", TLS: tlsConf, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(context.Background())
	t.Cleanup(func() { r.Close() })
	relayAddr := r.Addr().String()

	dir := t.TempDir()
	keyFile, outFile := filepath.Join(dir, "key.json"), filepath.Join(dir, "out.rec")
	if err := os.WriteFile(keyFile, []byte(`{"suite": 4, "base_key": "000102030405060708090a0b0c0d0e0f"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	encMetrics, decMetrics := proctest.FreeTCPAddr(t), proctest.FreeTCPAddr(t)
	common := []string{"-relay", relayAddr, "-insecure", "-namespace", "example.org/live", "-key-file", keyFile, "-log-level", "debug"}
	encCfg, err := parseFlags(append([]string{"-mode", "encrypt", "-source", relayAddr, "-source-namespace", "plain/live", "-metrics", encMetrics}, common...), env())
	if err != nil {
		t.Fatal(err)
	}
	decCfg, err := parseFlags(append([]string{"-mode", "decrypt", "-out-file", outFile, "-metrics", decMetrics}, common...), env())
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		name string
		err  error
		logs *clitest.SyncBuffer
	}
	done := make(chan result, 2)
	for name, cfg := range map[string]Config{"encrypt": encCfg, "decrypt": decCfg} {
		logs := &clitest.SyncBuffer{}
		go func() { done <- result{name, run(ctx, cfg, io.Discard, logs), logs} }()
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s sidecar log:\n%s", name, logs.String())
			}
		})
	}

	// The plaintext publisher, on the relay.
	src := sidecar.NewRelayClient(relayAddr, &moq.Config{InsecureSkipVerify: true, Logger: slog.New(slog.DiscardHandler)}, slog.New(slog.DiscardHandler))
	srcCtx, stopSrc := context.WithCancel(context.Background())
	srcDone := make(chan struct{})
	go func() { src.Run(srcCtx); close(srcDone) }()
	defer func() { stopSrc(); <-srcDone }()
	pub := src.Publisher([]string{"plain", "live"}, "video")

	// Wait for the whole path: the encrypting sidecar subscribed to the
	// plaintext, the relay (for the decrypting one) to the ciphertext.
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := pub.WaitSubscribers(wctx, 1); err != nil {
		t.Fatalf("encrypting sidecar never subscribed to the plaintext: %v", err)
	}
	proctest.WaitMetric(t, "http://"+encMetrics+"/metrics", "sidecar_relay_subscribers", 1, 20*time.Second)

	const n = 20
	for i := range n {
		if err := pub.WriteObject(uint64(i/5), 0, uint64(i%5), fmt.Appendf(nil, "frame %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	proctest.WaitMetric(t, "http://"+decMetrics+"/metrics", "sidecar_objects_out_total", n, 20*time.Second)

	cancel()
	for range 2 {
		select {
		case res := <-done:
			if res.err != nil {
				t.Errorf("%s sidecar: %v\n%s", res.name, res.err, res.logs.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatal("sidecars did not stop after their context ended")
		}
	}

	f, err := os.Open(outFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Groups travel on separate streams, so only the order within a group
	// is kept; every object must arrive once, with its IDs.
	rd := bufio.NewReader(f)
	seen := map[string]bool{}
	for {
		rec, err := sidecar.ReadRecord(rd)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("frame %d", rec.Group*5+rec.ObjectID)
		if rec.Track != "video" || string(rec.Payload) != want || seen[want] {
			t.Errorf("record %s %d/%d: %q (duplicate: %v)", rec.Track, rec.Group, rec.ObjectID, rec.Payload, seen[want])
		}
		seen[want] = true
	}
	if len(seen) != n {
		t.Fatalf("decrypted %d distinct objects, want %d", len(seen), n)
	}
}

// The RTP inputs and every decrypt output open, serve their metrics and
// close again when the context ends, without a relay to talk to.
func TestRunRTPAndOutputsStop(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.json")
	if err := os.WriteFile(keyFile, []byte(`{"suite": 4, "base_key": "000102030405060708090a0b0c0d0e0f"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	encMetrics, decMetrics := proctest.FreeTCPAddr(t), proctest.FreeTCPAddr(t)
	common := []string{"-relay", proctest.FreeUDPAddr(t), "-insecure", "-namespace", "example.org/live", "-key-file", keyFile, "-log-level", "error", "-workers", "2"}
	encCfg, err := parseFlags(append([]string{"-rtp-video", "127.0.0.1:0", "-rtp-audio", "127.0.0.1:0", "-metrics", encMetrics}, common...), env())
	if err != nil {
		t.Fatal(err)
	}
	decCfg, err := parseFlags(append([]string{"-mode", "decrypt", "-tracks", "video,audio", "-out-file", filepath.Join(dir, "out.rec"), "-serve", "127.0.0.1:0",
		"-rtp-out-video", "127.0.0.1:9", "-rtp-out-audio", "127.0.0.1:9", "-metrics", decMetrics}, common...), env())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	for _, cfg := range []Config{encCfg, decCfg} {
		go func() { done <- run(ctx, cfg, io.Discard, io.Discard) }()
	}
	proctest.WaitMetric(t, "http://"+encMetrics+"/metrics", "sidecar_rtp_audio_packets_total", 0, 20*time.Second)
	proctest.WaitMetric(t, "http://"+decMetrics+"/metrics", "sidecar_relay_reconnects_total", 0, 20*time.Second)
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out.rec")); err != nil {
		t.Error(err)
	}
}

// Files and addresses are checked by run, which fails at once.
func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.json")
	if err := os.WriteFile(keyFile, []byte(`{"suite": 4, "base_key": "000102030405060708090a0b0c0d0e0f"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer takenUDP.Close()
	caFile, certFile, keyPEM := testpki.Files(t, dir, "alice")
	base := []string{"-namespace", "a", "-log-level", "error", "-relay", proctest.FreeUDPAddr(t)}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-key-file", filepath.Join(dir, "missing.json"), "-rtp-video", "127.0.0.1:0", "-metrics", ""}, "missing.json"},
		{[]string{"-key-file", keyFile, "-rtp-video", "127.0.0.1:0", "-metrics", taken.Addr().String()}, "-metrics"},
		{[]string{"-key-file", keyFile, "-rtp-video", "256.0.0.1:0", "-metrics", ""}, "-rtp-video: listen udp: lookup 256.0.0.1"},
		{[]string{"-key-file", keyFile, "-rtp-video", "127.0.0.1:0", "-rtp-audio", takenUDP.LocalAddr().String()}, "-rtp-audio: listen udp " + takenUDP.LocalAddr().String()},
		{[]string{"-key-file", keyFile, "-mode", "decrypt", "-out-file", filepath.Join(dir, "no", "such", "dir"), "-metrics", ""}, "-out-file: open"},
		{[]string{"-key-file", keyFile, "-mode", "decrypt", "-serve", takenUDP.LocalAddr().String()}, "-serve: "},
		// Bound before the group is joined: the CS at port 1 is never asked.
		{[]string{"-cs", "https://127.0.0.1:1", "-group", "g", "-identity-cert", certFile, "-identity-key", keyPEM,
			"-trust-anchor", caFile, "-rtp-video", "127.0.0.1:0", "-metrics", taken.Addr().String()}, "-metrics: listen tcp " + taken.Addr().String()},
		{[]string{"-key-file", keyFile, "-rtp-video", "127.0.0.1:0", "-trust-anchor", filepath.Join(dir, "ca.pem"), "-identity-cert", filepath.Join(dir, "me.pem"), "-metrics", ""}, "me.pem"},
		{[]string{"-cs", "https://127.0.0.1:1", "-group", "g", "-identity-cert", filepath.Join(dir, "me.pem"), "-identity-key", filepath.Join(dir, "me.key"),
			"-trust-anchor", filepath.Join(dir, "ca.pem"), "-rtp-video", "127.0.0.1:0", "-metrics", ""}, "me.pem"},
	} {
		cfg, err := parseFlags(append(tc.args, base...), env())
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if err := run(context.Background(), cfg, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: want an error containing %q, got %v", tc.args, tc.want, err)
		}
	}
}

func TestExtractCommand(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "media.rec")
	f, _ := os.Create(rec)
	fs := sidecar.NewFileSink(f)
	fs.WriteObject("video", 1, 0, 0, []byte("\x00\x00\x00\x01B"))
	fs.WriteObject("video", 0, 0, 0, []byte("\x00\x00\x00\x01A"))
	fs.WriteObject("audio", 0, 0, 0, []byte("x"))
	fs.Flush()
	f.Close()
	out := filepath.Join(dir, "video.h264")
	var stdout, stderr bytes.Buffer
	if code := cli.Exit(context.Background(), "sframe-sidecar extract", []string{"-in", rec, "-out", out}, env(), &stdout, &stderr, parseExtractFlags, runExtract); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if b, _ := os.ReadFile(out); string(b) != "\x00\x00\x00\x01A\x00\x00\x00\x01B" {
		t.Fatalf("extracted %q", b)
	}
	if !strings.Contains(stderr.String(), `2 objects (10 bytes) of track "video"`) {
		t.Errorf("stderr %q", stderr.String())
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "-in is required"},
		{[]string{"-in", filepath.Join(dir, "none.rec")}, 1, "-in: open"},
		{[]string{"-in", rec, "-track", "data"}, 1, `no objects of track "data"`},
		{[]string{"-h"}, 0, ""},
	} {
		stdout.Reset()
		stderr.Reset()
		if code := cli.Exit(context.Background(), "sframe-sidecar extract", tc.args, env(), &stdout, &stderr, parseExtractFlags, runExtract); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
	}
}
