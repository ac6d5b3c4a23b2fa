package integration

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moqsframe/moqsframe/internal/proctest"
)

// ensureChromium installs Debian's chromium with the project's setup
// script if it is missing.
func ensureChromium(t *testing.T) {
	if _, err := exec.LookPath("chromium"); err != nil {
		out, err := exec.Command("../scripts/setup.sh").CombinedOutput()
		if err != nil {
			t.Logf("scripts/setup.sh: %v\n%s", err, out)
		}
	}
	proctest.RequireCommand(t, "chromium", "run scripts/setup.sh (installs Debian's chromium)")
}

// startBrowser starts a headless Chromium with a fake camera and
// microphone; each newTab of the returned context is a page.
func startBrowser(t *testing.T) context.Context {
	ensureChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("chromium"), chromedp.NoSandbox, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true), chromedp.Flag("disable-gpu", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true), chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(900, 1000))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	return bctx
}

func newTab(t *testing.T, browser context.Context, url string) context.Context {
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	return ctx
}

// evalJS evaluates expr in the tab, bounded by timeout.
func evalJS[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitJS polls a predicate in the tab until it holds.
func waitJS(t *testing.T, tab context.Context, what, predicate string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, timeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingInterval(200*time.Millisecond))); err != nil {
		state, _ := chromedp.Run(tab, chromedp.Evaluate[string](`JSON.stringify({player: window.player, publisher: window.publisher, status: (document.getElementById("status")||{}).textContent})`))
		t.Fatalf("waiting for %s: %v; page state %s", what, err, state)
	}
}

// webChain is relay → encrypting sidecar → decrypting sidecar with WHEP
// and the player, plus an observer of what the relay forwards.
type webChain struct {
	relayMetrics, encMetrics, decMetrics string
	player, recFile                      string
	enc, dec                             *proctest.Proc
	mu                                   sync.Mutex
	relayed                              [][]byte
}

func startWebChain(t *testing.T, encInput ...string) *webChain {
	relayBin, sidecarBin := proctest.Build(t, relayPkg), proctest.Build(t, sidecarPkg)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.json")
	os.WriteFile(keyFile, []byte(`{"suite": 4, "base_key": "00112233445566778899aabbccddeeff"}`), 0o600)
	c := &webChain{recFile: filepath.Join(dir, "out.rec")}
	relayAddr := proctest.FreeUDPAddr(t)
	c.relayMetrics, c.encMetrics, c.decMetrics = proctest.FreeTCPAddr(t), proctest.FreeTCPAddr(t), proctest.FreeTCPAddr(t)
	proctest.Start(t, "moq-relay", relayBin, "-listen", relayAddr, "-metrics", c.relayMetrics)
	proctest.WaitHTTP(t, "http://"+c.relayMetrics+"/healthz", 20*time.Second)
	common := []string{"-relay", relayAddr, "-insecure", "-namespace", "web.example/live", "-key-file", keyFile}
	c.enc = proctest.Start(t, "encrypting sidecar", sidecarBin, append(append([]string{"-mode", "encrypt", "-metrics", c.encMetrics}, common...), encInput...)...)
	c.enc.WaitHealthy(t, "http://"+c.encMetrics+"/healthz", 20*time.Second)
	web := proctest.FreeTCPAddr(t)
	c.player = "http://" + web + "/"
	c.dec = proctest.Start(t, "decrypting sidecar", sidecarBin, append([]string{"-mode", "decrypt", "-metrics", c.decMetrics,
		"-tracks", "video,audio", "-whep", web, "-web", web, "-out-file", c.recFile}, common...)...)
	c.dec.WaitHealthy(t, "http://"+c.decMetrics+"/healthz", 20*time.Second)
	for _, track := range []string{"video", "audio"} {
		sub := subscribeRelay(t, relayAddr, []string{"web.example", "live"}, track)
		go func() {
			for {
				o, err := sub.ReadObject(context.Background())
				if err != nil {
					return
				}
				c.mu.Lock()
				c.relayed = append(c.relayed, o.Payload)
				c.mu.Unlock()
			}
		}()
	}
	// Both tracks are subscribed through the relay (decrypting sidecar and
	// observer) before any media flows.
	proctest.WaitMetric(t, "http://"+c.encMetrics+"/metrics", "sidecar_relay_subscribers", 2, 20*time.Second)
	return c
}

// checkCiphertext fails if any frame the decrypting sidecar wrote appears
// in what the relay forwarded.
// It stops the decrypting sidecar, which flushes the record file.
func (c *webChain) checkCiphertext(t *testing.T) int {
	if err := c.dec.Stop(t); err != nil {
		t.Errorf("decrypting sidecar exit: %v", err)
	}
	recs := readRecords(t, c.recFile)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.relayed) == 0 || len(recs) == 0 {
		t.Fatalf("relay forwarded %d objects, %d decrypted", len(c.relayed), len(recs))
	}
	for _, r := range recs {
		probe := r.Payload[len(r.Payload)/2:]
		probe = probe[:min(32, len(probe))]
		if len(probe) < 16 {
			continue
		}
		for _, ct := range c.relayed {
			if bytes.Contains(ct, probe) {
				t.Fatalf("relay forwarded plaintext of a %s frame", r.Track)
			}
		}
	}
	return len(recs)
}

type playerState struct {
	FramesDecoded, AudioPackets, Width, Height int
	FPS                                        float64
	Latencies                                  []float64
}

// TestBrowserWHIPToWHEP: Chromium page A publishes its fake camera (with a
// timestamp drawn in) and microphone over WHIP → encrypting sidecar →
// relay → decrypting sidecar → WHEP → the player page in Chromium page B,
// which decodes more than 100 frames and receives audio. The relay forwards
// only ciphertext; every sealed object is decrypted; the viewer misses at
// most the frames before its first keyframe. Bad WHIP requests meanwhile
// (wrong token, malformed SDP, no supported codec, a session too many) each
// get their 4xx and counter, and the running session is unaffected.
func TestBrowserWHIPToWHEP(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: chromium and three processes")
	}
	start := time.Now()
	whip := proctest.FreeTCPAddr(t)
	c := startWebChain(t, "-whip", whip, "-whip-token", "s3cret", "-whip-max-sessions", "1")
	browser := startBrowser(t)
	pub := newTab(t, browser, "http://"+whip+"/?autostart&stamp&token=s3cret")
	waitJS(t, pub, "the WHIP publisher to connect", `window.publisher && window.publisher.connected`, 30*time.Second)
	if codec := evalJS[string](t, pub, `window.publisher.codec || ""`); codec != "" && codec != "video/H264" {
		t.Errorf("publisher codec %q, want video/H264", codec)
	}
	view := newTab(t, browser, c.player)
	waitJS(t, view, "the player to decode 100 frames and receive audio",
		`window.player && window.player.framesDecoded > 100 && window.player.audioPackets > 0`, 90*time.Second)
	badRequests(t, "http://"+whip+"/whip", "http://"+c.encMetrics+"/metrics")
	// The publishing session is unaffected: the player keeps decoding.
	waitJS(t, view, "the player to keep decoding after the bad requests", `window.player.framesDecoded > 130`, 60*time.Second)
	st := evalJS[playerState](t, view, `({FramesDecoded: player.framesDecoded, AudioPackets: player.audioPackets, Width: player.width,
		Height: player.height, FPS: player.fps, Latencies: player.latencies})`)
	if _, err := chromedp.Run(pub, chromedp.Evaluate[any](`stop()`)); err != nil {
		t.Fatalf("stopping the publisher: %v", err)
	}
	// Every object sealed is decrypted, once the last ones are through.
	sealed := proctest.Metrics(t, "http://"+c.encMetrics+"/metrics")["sidecar_objects_out_total"]
	proctest.WaitMetric(t, "http://"+c.decMetrics+"/metrics", "sidecar_objects_out_total", sealed, 20*time.Second)
	enc := proctest.Metrics(t, "http://"+c.encMetrics+"/metrics")
	dec := proctest.Metrics(t, "http://"+c.decMetrics+"/metrics")
	if enc["sidecar_objects_out_total"] != dec["sidecar_objects_out_total"] || dec["sidecar_auth_failures_total"] != 0 {
		t.Errorf("sealed %v, decrypted %v, auth failures %v", enc["sidecar_objects_out_total"], dec["sidecar_objects_out_total"], dec["sidecar_auth_failures_total"])
	}
	if enc["sidecar_whip_frames_total"] != enc["sidecar_objects_out_total"] || enc["sidecar_whip_sessions_total"] != 1 {
		t.Errorf("WHIP submitted %v frames, sidecar sealed %v; %v sessions", enc["sidecar_whip_frames_total"], enc["sidecar_objects_out_total"], enc["sidecar_whip_sessions_total"])
	}
	// The viewer got every decrypted object after it joined, except the
	// video frames before its first keyframe (a PLI every 2 s: at most ~60
	// at 30 fps, with slack for a busy machine).
	sent, skipped := dec["sidecar_whep_frames_sent_total"], dec["sidecar_whep_frames_skipped_total"]
	if sent < float64(st.FramesDecoded) || sent+skipped > dec["sidecar_objects_out_total"] || skipped > 150 {
		t.Errorf("WHEP sent %v frames, skipped %v waiting for a keyframe, decrypted %v; browser decoded %d", sent, skipped, dec["sidecar_objects_out_total"], st.FramesDecoded)
	}
	n := c.checkCiphertext(t)
	sort.Float64s(st.Latencies)
	if len(st.Latencies) < 10 {
		t.Errorf("only %d stamped frames read back", len(st.Latencies))
	} else {
		t.Logf("glass-to-glass latency (timestamp drawn into the canvas on page A, read on page B, same clock): median %.0f ms, p90 %.0f ms, %d frames",
			st.Latencies[len(st.Latencies)/2], st.Latencies[len(st.Latencies)*9/10], len(st.Latencies))
	}
	t.Logf("player: framesDecoded %d, %dx%d at %.0f fps, %d audio packets; sidecars: %v sealed = %v decrypted (%d in the record file), WHEP sent %v, skipped before the first keyframe %v; relay forwarded only ciphertext; %.1fs",
		st.FramesDecoded, st.Width, st.Height, st.FPS, st.AudioPackets, enc["sidecar_objects_out_total"], dec["sidecar_objects_out_total"], n, sent, skipped, time.Since(start).Seconds())
}

// badRequests sends the WHIP requests an attacker or a misconfigured
// encoder would, to a sidecar with token s3cret and one session running:
// each gets its 4xx with a reason and is counted by reason.
func badRequests(t *testing.T, url, metrics string) {
	const h264 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=mid:0\r\na=sendonly\r\na=rtpmap:102 H264/90000\r\n"
	av1 := strings.ReplaceAll(h264, "H264", "AV1")
	for _, c := range []struct {
		name, token, body string
		status            int
		reason            string
	}{
		{"wrong token", "guess", h264, http.StatusUnauthorized, "unauthorized"},
		{"malformed SDP", "s3cret", "v=0\r\nnot SDP at all\r\n", http.StatusBadRequest, "malformed_offer"},
		{"no supported codec", "s3cret", av1, http.StatusUnprocessableEntity, "no_codec"},
		{"too many sessions", "s3cret", h264, http.StatusTooManyRequests, "too_many_sessions"},
	} {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/sdp")
		req.Header.Set("Authorization", "Bearer "+c.token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.status || !strings.HasPrefix(string(body), "whip: ") {
			t.Errorf("%s: %d %q, want %d with a reason", c.name, res.StatusCode, body, c.status)
		}
		if n := proctest.Metrics(t, metrics)[`sidecar_whip_refused_total{reason="`+c.reason+`"}`]; n != 1 {
			t.Errorf("%s: sidecar_whip_refused_total{reason=%q} = %v, want 1", c.name, c.reason, n)
		}
		t.Logf("%s: %d %s", c.name, res.StatusCode, strings.TrimSpace(string(body)))
	}
}

// TestPlayerWithFFmpeg: the demo's input (ffmpeg's test pattern and tone
// as RTP) → the sidecars → the player page, whose video is screenshotted:
// the picture must not be blank. The PNG is kept in
// integration/artifacts/player.png.
func TestPlayerWithFFmpeg(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: chromium, ffmpeg and three processes")
	}
	ensureFFmpeg(t)
	rtpVideo, rtpAudio := proctest.FreeUDPAddr(t), proctest.FreeUDPAddr(t)
	c := startWebChain(t, "-rtp-video", rtpVideo, "-rtp-audio", rtpAudio)
	browser := startBrowser(t)
	view := newTab(t, browser, c.player)
	waitJS(t, view, "the player to connect", `window.player && window.player.connected`, 30*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ffmpeg := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "30",
		"-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-bf", "0", "-pix_fmt", "yuv420p",
		"-payload_type", "96", "-f", "rtp", "rtp://"+rtpVideo+"?pkt_size=1200",
		"-map", "1:a", "-c:a", "libopus", "-b:a", "64k", "-payload_type", "111", "-f", "rtp", "rtp://"+rtpAudio)
	if err := ffmpeg.Start(); err != nil {
		t.Fatal(err)
	}
	defer ffmpeg.Wait()
	defer cancel()
	waitJS(t, view, "the player to decode 60 frames", `window.player.framesDecoded > 60 && window.player.audioPackets > 0`, 60*time.Second)
	shot, err := chromedp.Run(view, chromedp.Screenshot("#video"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("artifacts", 0o755); err != nil {
		t.Fatal(err)
	}
	path, _ := filepath.Abs(filepath.Join("artifacts", "player.png"))
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatal(err)
	}
	v := lumaVariance(img)
	if v < 100 {
		t.Errorf("video area looks blank: luma variance %.1f (screenshot %s)", v, path)
	}
	st := evalJS[playerState](t, view, `({FramesDecoded: player.framesDecoded, AudioPackets: player.audioPackets, Width: player.width, Height: player.height})`)
	cancel()
	c.checkCiphertext(t)
	t.Logf("player decoded %d frames (%dx%d), %d audio packets; screenshot %s, luma variance %.0f", st.FramesDecoded, st.Width, st.Height, st.AudioPackets, path, v)
}

// lumaVariance is the variance of the luma of img's pixels: near 0 for a
// blank (single color) picture, thousands for a test pattern.
func lumaVariance(img image.Image) float64 {
	var sum, sq, n float64
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			l := (0.299*float64(r) + 0.587*float64(g) + 0.114*float64(bl)) / 257
			sum += l
			sq += l * l
			n++
		}
	}
	m := sum / n
	return sq/n - m*m
}
