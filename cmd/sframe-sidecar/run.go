package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moqsframe/moqsframe/cmd/internal/cli"
	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/group"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/keyschedule"
	"github.com/moqsframe/moqsframe/moq"
	"github.com/moqsframe/moqsframe/pipeline"
	"github.com/moqsframe/moqsframe/sidecar"
	"github.com/prometheus/client_golang/prometheus"
)

// run runs the sidecar until ctx ends, then drains in-flight objects (at
// most cfg.DrainTimeout), disconnects and returns. It logs to stderr;
// nothing goes to stdout.
func run(ctx context.Context, cfg Config, _, stderr io.Writer) error {
	log := cli.NewLogger(stderr, cfg.LogLevel)
	moqCfg, err := moqConfig(cfg, log)
	if err != nil {
		return err
	}
	// Every listener and output is bound before the group is joined: a
	// busy port fails at once, naming its flag, and costs no group epoch.
	relay := sidecar.NewRelayClient(cfg.Relay, moqCfg, log)
	relay.SetReconnectBuffer(sidecar.ReconnectBuffer{MaxAge: cfg.ReconnectBuffer, MaxBytes: cfg.ReconnectBufferBytes})
	metricsLn, err := listenMetrics(cfg.Metrics)
	if err != nil {
		return err
	}
	defer metricsLn.Close()
	rtpIn, err := listenRTP(cfg)
	if err != nil {
		return err
	}
	defer closeAll(rtpIn)
	sink, closeOutputs, err := openOutputs(cfg, relay, moqCfg, log)
	if err != nil {
		return err
	}
	defer closeOutputs()
	rtc, err := listenWebRTC(cfg, log) // -whip, -whep, -web (webrtc.go)
	if err != nil {
		return err
	}
	defer rtc.close()
	sink = rtc.sink(sink)

	keys, member, leave, err := loadKeys(ctx, cfg, moqCfg, log)
	if err != nil {
		return err
	}
	defer leave()
	keys = benchKeys(keys, log)
	reg := newMetrics(relay, member)
	sc, err := sidecar.New(sidecar.Config{Mode: cfg.Mode, Namespace: cfg.Namespace, Keys: keys, Sink: sink,
		Pipeline: pipeline.Config{Workers: cfg.Workers}, MaxObjectSize: cfg.MaxObjectSize, LossWindow: cfg.ReplayWindow,
		Metrics: sidecar.NewMetrics(reg), Logger: log})
	if err != nil {
		return err
	}
	reg.MustRegister(sidecar.LossCollector(sc))

	// The relay session outlives ctx: it carries the objects drained
	// after it ends.
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	relayDone := make(chan struct{})
	go func() { relay.Run(relayCtx); close(relayDone) }()
	stopRelayWait := func() { stopRelay(); <-relayDone }
	defer stopRelayWait()

	inputCtx, stopInput := context.WithCancel(ctx)
	defer stopInput()
	inputs, err := startInputs(inputCtx, cfg, rtpIn, relay, sc, reg, moqCfg, log)
	if err != nil {
		sc.Close()
		return err
	}
	stopWebRTC := rtc.start(inputCtx, cfg, sc, relay, reg, member, log)
	defer stopWebRTC()
	stopMetrics := serveMetrics(metricsLn, reg, relay, log)
	defer stopMetrics()
	log.Info("sidecar running", "mode", cfg.Mode, "relay", cfg.Relay, "namespace", cfg.Namespace)

	var runErr error
	select {
	case <-inputCtx.Done():
		log.Info("shutting down: draining in-flight objects")
	case runErr = <-inputs:
		if runErr != nil {
			log.Error("input failed", "err", runErr)
		}
	}
	stopInput()
	drain(sc, cfg.DrainTimeout, log)
	stopRelayWait()
	closeOutputs()
	st := sc.Stats()
	log.Info("sidecar stopped", "objects", st.Objects, "bytes", st.Bytes, "drops", st.Drops, "errors", st.Errors, "auth_failures", st.AuthFailed,
		"lost", counterValue(sc.M.Lost), "duplicates", counterValue(sc.M.Duplicates), "unpublished", relay.Unpublished.Load())
	return runErr
}

// listenRTP binds the RTP inputs (encrypt mode): video first, then audio.
func listenRTP(cfg Config) ([]rtpInput, error) {
	if cfg.Mode != sidecar.Encrypt {
		return nil, nil
	}
	var ins []rtpInput
	for _, in := range []rtpInput{
		{flag: "-rtp-video", addr: cfg.RTPVideo, track: "video", codec: cfg.VideoCodec},
		{flag: "-rtp-audio", addr: cfg.RTPAudio, track: "audio", codec: sidecar.Opus},
	} {
		if in.addr == "" {
			continue
		}
		conn, err := net.ListenPacket("udp", in.addr)
		if err != nil {
			closeAll(ins)
			return nil, fmt.Errorf("%s: %w", in.flag, err)
		}
		if uc, ok := conn.(*net.UDPConn); ok {
			_ = uc.SetReadBuffer(8 << 20) // keyframes arrive as bursts
		}
		in.conn = conn
		ins = append(ins, in)
	}
	return ins, nil
}

type rtpInput struct {
	flag, addr, track string
	codec             sidecar.Codec
	conn              net.PacketConn
}

func closeAll(ins []rtpInput) {
	for _, in := range ins {
		in.conn.Close()
	}
}

// drain closes the sidecar, waiting at most timeout for in-flight objects.
func drain(sc *sidecar.Sidecar, timeout time.Duration, log *slog.Logger) {
	drained := make(chan struct{})
	go func() { sc.Close(); close(drained) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
		log.Warn("drain timed out; objects may be lost")
	}
}

// moqConfig is the MoQ client configuration for the relay (and -source,
// -serve): with -trust-anchor and -identity-cert the sidecar presents its
// certificate to the relay (which lets only certified identities announce)
// and verifies the relay's against the anchor (unless -insecure).
func moqConfig(cfg Config, log *slog.Logger) (*moq.Config, error) {
	moqCfg := &moq.Config{MaxObjectSize: cfg.MaxObjectSize + 64, InsecureSkipVerify: cfg.Insecure, Logger: log,
		MaxIdleTimeout: cfg.RelayTimeout, HandshakeTimeout: cfg.RelayTimeout}
	if cfg.TrustAnchor == "" || cfg.IdentityCert == "" {
		return moqCfg, nil
	}
	cert, err := identity.LoadCertificate(cfg.IdentityCert, cfg.IdentityKey)
	if err != nil {
		return nil, err
	}
	v, err := identity.LoadVerifier(cfg.TrustAnchor)
	if err != nil {
		return nil, err
	}
	moqCfg.TLSConfig = identity.ClientTLS(cert, v)
	moqCfg.TLSConfig.InsecureSkipVerify = cfg.Insecure
	return moqCfg, nil
}

// loadKeys returns the key source: the static key file, or the security
// group joined through the CS (then member is set and leave leaves it).
func loadKeys(ctx context.Context, cfg Config, moqCfg *moq.Config, log *slog.Logger) (keys sidecar.KeySource, member *group.Member, leave func(), err error) {
	if cfg.CS == "" {
		sk, err := sidecar.LoadKeyFile(cfg.KeyFile)
		if err != nil {
			return nil, nil, nil, err
		}
		sk.ReplayWindow = cfg.ReplayWindow
		return sk, nil, func() {}, nil
	}
	m, leave, err := joinGroup(ctx, cfg, moqCfg, log)
	if err != nil {
		return nil, nil, nil, err
	}
	return sidecar.NewGroupKeys(m), m, leave, nil
}

// openOutputs returns the sidecar's sink: the relay's publishers when
// encrypting; the file, local MoQ server and RTP outputs when decrypting.
// closeOutputs flushes and closes them; calling it twice is harmless.
func openOutputs(cfg Config, relay *sidecar.RelayClient, moqCfg *moq.Config, log *slog.Logger) (sink sidecar.Sink, closeOutputs func(), err error) {
	if cfg.Mode == sidecar.Encrypt {
		return relay.Sink(cfg.Namespace), func() {}, nil
	}
	var (
		sinks   sidecar.Tee
		closers []func()
	)
	closeAll := func() {
		for _, c := range closers {
			c()
		}
		closers = nil
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	if cfg.OutFile != "" {
		f, err := os.Create(cfg.OutFile)
		if err != nil {
			return nil, nil, fmt.Errorf("-out-file: %w", err)
		}
		fsink := sidecar.NewFileSink(f)
		sinks = append(sinks, fsink)
		closers = append(closers, func() {
			if err := errors.Join(fsink.Flush(), f.Close()); err != nil {
				log.Error("writing -out-file", "err", err)
			}
		})
	}
	if cfg.Serve != "" {
		srv, err := sidecar.ListenLocal(cfg.Serve, moqCfg)
		if err != nil {
			return nil, nil, fmt.Errorf("-serve: %w", err)
		}
		log.Info("serving plaintext tracks", "addr", srv.Addr())
		sinks = append(sinks, sidecar.PublisherSink{Publishers: srv, Namespace: cfg.Namespace})
		closers = append(closers, func() { srv.Close() })
	}
	var outs []sidecar.RTPOutput
	if cfg.RTPOutVideo != "" {
		outs = append(outs, sidecar.RTPOutput{Track: "video", Codec: cfg.VideoCodec, Addr: cfg.RTPOutVideo})
	}
	if cfg.RTPOutAudio != "" {
		outs = append(outs, sidecar.RTPOutput{Track: "audio", Codec: sidecar.Opus, Addr: cfg.RTPOutAudio})
	}
	if cfg.RTPOutSDP != "" {
		if err := writeSDP(cfg.RTPOutSDP, outs); err != nil {
			return nil, nil, fmt.Errorf("-rtp-out-sdp: %w", err)
		}
		log.Info("RTP outputs described", "sdp", cfg.RTPOutSDP)
	}
	if len(outs) > 0 {
		rs, err := sidecar.NewRTPSink(outs)
		if err != nil {
			return nil, nil, fmt.Errorf("-rtp-out-video/-rtp-out-audio: %w", err)
		}
		sinks = append(sinks, rs)
		closers = append(closers, func() { rs.Close() })
	}
	switch len(sinks) {
	case 0:
		if cfg.WHEP != "" { // the only output: rtc.sink
			return nil, closeAll, nil
		}
		return nil, nil, errors.New("decrypt mode needs an output: -out-file, -serve, -rtp-out-video or -rtp-out-audio")
	case 1:
		return sinks[0], closeAll, nil
	}
	return sinks, closeAll, nil
}

func writeSDP(path string, outs []sidecar.RTPOutput) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return errors.Join(sidecar.WriteSDP(f, outs), f.Close())
}

// startInputs feeds the sidecar until ctx ends: from RTP and -source when
// encrypting, from the relay when decrypting. An input that stops sends on
// the channel (nil if it stopped cleanly).
func startInputs(ctx context.Context, cfg Config, rtpIn []rtpInput, relay *sidecar.RelayClient, sc *sidecar.Sidecar, reg prometheus.Registerer, moqCfg *moq.Config, log *slog.Logger) (<-chan error, error) {
	inputs := make(chan error, 3)
	if cfg.Mode == sidecar.Decrypt {
		sidecar.SubscribeInto(ctx, relay, cfg.Namespace, cfg.Tracks, sc)
		return inputs, nil
	}
	running := 0
	for _, in := range rtpIn {
		relay.Publisher(cfg.Namespace, in.track) // announce now, so the relay can subscribe before the first frame
		src := &sidecar.RTPSource{Conn: in.conn, Track: in.track, Codec: in.codec, Sidecar: sc, Allow: cfg.RTPSource}
		log.Info("receiving RTP", "track", in.track, "codec", in.codec, "addr", in.conn.LocalAddr())
		running++
		go func() { inputs <- src.Run(ctx, reg) }()
	}
	if cfg.Source != "" {
		for _, t := range cfg.Tracks {
			relay.Publisher(cfg.Namespace, t)
		}
		local := sidecar.NewRelayClient(cfg.Source, moqCfg, log)
		sidecar.SubscribeInto(ctx, local, cfg.SourceNamespace, cfg.Tracks, sc)
		running++
		go func() { local.Run(ctx); inputs <- nil }()
	}
	if running == 0 && cfg.WHIP == "" {
		return nil, errors.New("encrypt mode needs an input: -rtp-video, -rtp-audio or -source")
	}
	return inputs, nil
}

// joinGroup joins the security group (group mode). The member has its own
// MoQ session to the relay for the group tracks; if that session breaks it
// keeps up from the CS archive. leave leaves the group and closes both.
func joinGroup(ctx context.Context, cfg Config, moqCfg *moq.Config, log *slog.Logger) (*group.Member, func(), error) {
	cert, err := identity.LoadCertificate(cfg.IdentityCert, cfg.IdentityKey)
	if err != nil {
		return nil, nil, err
	}
	verifier, err := identity.LoadVerifier(cfg.TrustAnchor)
	if err != nil {
		return nil, nil, err
	}
	policy := identity.AllowAll()
	if cfg.Policy != "" {
		if policy, err = identity.LoadPolicy(cfg.Policy); err != nil {
			return nil, nil, err
		}
	}
	cs, err := csClient(cfg, cert, verifier)
	if err != nil {
		return nil, nil, err
	}
	// A sidecar restarted with its certificate joins once its old leaf is
	// removed for silence: allow for that.
	ctx, cancel := context.WithTimeout(ctx, max(30*time.Second, 2*cfg.LivenessTimeout))
	defer cancel()
	sess, err := moq.Dial(ctx, cfg.Relay, moqCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("group mode: relay: %w", err)
	}
	m, err := group.New(group.Config{Certificate: cert, Verifier: verifier, Policy: policy, Group: cfg.Group, CS: cs, Session: sess,
		Prefix: cfg.GroupPrefix, Logger: log, LivenessTimeout: cfg.LivenessTimeout,
		ScheduleOptions: []keyschedule.Option{keyschedule.WithReplayWindow(cfg.ReplayWindow)}})
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	if err := m.Join(ctx); err != nil {
		m.Close()
		sess.Close()
		return nil, nil, fmt.Errorf("group mode: joining %q: %w", cfg.Group, err)
	}
	// The roster is logged on the EventRoster of the join, in logEvents.
	log.Info("joined security group", "group", cfg.Group, "identity", m.Identity(), "epoch", m.Epoch())
	var leaving atomic.Bool
	go logEvents(m, cfg.Group, &leaving, log)
	leave := func() {
		leaving.Store(true)
		lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.Leave(lctx); err != nil {
			log.Warn("leaving the security group", "err", err)
		}
		lcancel()
		m.Close()
		sess.Close()
	}
	return m, leave, nil
}

// csClient is the coordination service's client. The CS's certificate is
// always verified: against -cs-ca if given, else the trust anchor;
// -insecure is about the relay only.
func csClient(cfg Config, cert *identity.Certificate, verifier *identity.Verifier) (*coord.Client, error) {
	csRoots := verifier.Roots()
	if cfg.CSCA != "" {
		pem, err := os.ReadFile(cfg.CSCA)
		if err != nil {
			return nil, fmt.Errorf("-cs-ca: %w", err)
		}
		csRoots = x509.NewCertPool()
		if !csRoots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-cs-ca %s: no PEM certificate", cfg.CSCA)
		}
	}
	tc := identity.ClientTLS(cert, verifier)
	tc.RootCAs = csRoots
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	return coord.NewClient(cfg.CS, hc)
}

// logEvents logs the member's events until it is closed. Being removed is
// a warning unless this sidecar is leaving.
func logEvents(m *group.Member, groupName string, leaving *atomic.Bool, log *slog.Logger) {
	for ev := range m.Events() {
		switch ev.Type {
		case group.EventRemoved:
			switch {
			case leaving.Load():
				log.Info("left the security group", "group", groupName, "epoch", ev.Epoch)
			case ev.Err != nil:
				log.Warn("out of the security group: no more keys", "group", groupName, "epoch", ev.Epoch, "err", ev.Err)
			default:
				log.Warn("removed from the security group by another member: no more keys", "group", groupName, "epoch", ev.Epoch)
			}
		case group.EventSilent:
			if len(ev.Silent) > 0 {
				log.Warn("security group members silent past the liveness timeout; the committer removes them", "group", groupName, "silent", ev.Silent)
			}
		case group.EventRefused:
			log.Error("security group: credential refused", "epoch", ev.Epoch, "err", ev.Err)
		case group.EventStuck:
			log.Error("security group: the accepted commit cannot be processed; staying on the last good epoch", "epoch", ev.Epoch, "err", ev.Err)
		case group.EventError:
			log.Warn("security group", "err", ev.Err)
		case group.EventRoster:
			logRoster(m, log)
		case group.EventCommitted:
			log.Info("security group epoch", "event", ev.Type.String(), "epoch", ev.Epoch, "members", ev.Members, "removed_silent", ev.RemovedSilent)
		default:
			log.Info("security group epoch", "event", ev.Type.String(), "epoch", ev.Epoch, "members", ev.Members)
		}
	}
}

// logRoster logs the verified roster of the current epoch: who can read
// what this sidecar sends.
func logRoster(m *group.Member, log *slog.Logger) {
	r := m.Roster()
	names := make([]string, len(r))
	for i, e := range r {
		names[i] = fmt.Sprintf("%d:%s:%.16s", e.Leaf, e.Name, e.Fingerprint)
	}
	log.Info("security group roster", "epoch", m.Epoch(), "members", len(r), "roster", strings.Join(names, " "))
}
