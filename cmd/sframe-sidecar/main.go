// Command sframe-sidecar sits beside a media server or encoder and turns
// plaintext MoQ tracks (or RTP from an encoder) into SFrame tracks on a MoQ
// relay, or SFrame tracks back into plaintext. The relay never sees a key.
//
//	sframe-sidecar -mode encrypt -relay 127.0.0.1:4443 -namespace example.org/live \
//	    -key-file key.json -rtp-video 127.0.0.1:5004 -rtp-audio 127.0.0.1:5006
//	sframe-sidecar -mode decrypt -relay 127.0.0.1:4443 -namespace example.org/live \
//	    -key-file key.json -tracks video,audio -out-file media.rec -rtp-out-video 127.0.0.1:6004
//
// Group mode (instead of -key-file): keys come from a security group through
// the coordination service (docs/security-groups.md, docs/security.md); the
// member's identity is the name in its certificate (sframe identity issue):
//
//	sframe-sidecar ... -cs https://127.0.0.1:8443 -group room -trust-anchor pki/ca.pem \
//	    -identity-cert pki/alice.pem -identity-key pki/alice.key -policy policy.json
//
// Every flag can also be set by an environment variable: SFRAME_SIDECAR_
// followed by the flag name in upper case with - as _ (e.g.
// SFRAME_SIDECAR_KEY_FILE). Flags win over the environment.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/group"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/keyschedule"
	"github.com/moqsframe/moqsframe/moq"
	"github.com/moqsframe/moqsframe/sidecar"
)

type options struct {
	mode, relay, namespace, tracks, keyFile string
	csURL, groupName, csCA                  string
	identityCert, identityKey, trustAnchor  string
	policy                                  string
	groupPrefix                             string
	source, sourceNamespace                 string
	rtpVideo, rtpAudio                      string
	outFile, serve, metricsAddr, logLevel   string
	rtpOutVideo, rtpOutAudio                string
	workers, maxObject, replayWindow        int
	insecure                                bool
	drainTimeout                            time.Duration
}

func main() {
	var o options
	fs := flag.NewFlagSet("sframe-sidecar", flag.ExitOnError)
	fs.StringVar(&o.mode, "mode", "encrypt", "encrypt (plaintext in, SFrame to the relay) or decrypt (SFrame from the relay, plaintext out)")
	fs.StringVar(&o.relay, "relay", "127.0.0.1:4443", "MoQ relay address (QUIC)")
	fs.StringVar(&o.namespace, "namespace", "", "track namespace on the relay, fields separated by /")
	fs.StringVar(&o.tracks, "tracks", "video", "track names, comma-separated (subscribed in decrypt mode and from -source)")
	fs.StringVar(&o.keyFile, "key-file", "", `static key file: {"suite": 4, "base_key": "<hex>"}`)
	fs.StringVar(&o.csURL, "cs", "", "group mode: coordination service URL (https://host:port); keys come from the security group (excludes -key-file)")
	fs.StringVar(&o.groupName, "group", "", "group mode: security group name")
	fs.StringVar(&o.identityCert, "identity-cert", "", "group mode: this member's certificate (PEM, from sframe identity issue); the identity is the name in it")
	fs.StringVar(&o.identityKey, "identity-key", "", "group mode: the certificate's private key (PEM)")
	fs.StringVar(&o.trustAnchor, "trust-anchor", "", "group mode: the deployment's CA certificate (PEM); every other member's certificate, the CS's and the relay's must chain to it")
	fs.StringVar(&o.policy, "policy", "", `group mode: admission policy file, {"groups": {"room": ["alice", "bob"]}}; members outside it are refused (default: any name the trust anchor certifies)`)
	fs.StringVar(&o.csCA, "cs-ca", "", "group mode: PEM certificate(s) to trust for the CS (default: -trust-anchor)")
	fs.StringVar(&o.groupPrefix, "group-prefix", "moqsframe/cs", "group mode: MoQ namespace prefix of the group tracks (sframe-cs -namespace-prefix)")
	fs.StringVar(&o.source, "source", "", "encrypt: address of a local MoQ publisher of the plaintext tracks")
	fs.StringVar(&o.sourceNamespace, "source-namespace", "", "encrypt: namespace of the plaintext tracks at -source (default: -namespace)")
	fs.StringVar(&o.rtpVideo, "rtp-video", "", "encrypt: UDP address to receive H.264 RTP on (track \"video\")")
	fs.StringVar(&o.rtpAudio, "rtp-audio", "", "encrypt: UDP address to receive Opus RTP on (track \"audio\")")
	fs.StringVar(&o.outFile, "out-file", "", "decrypt: write plaintext objects to this file (sidecar record format)")
	fs.StringVar(&o.serve, "serve", "", "decrypt: serve plaintext tracks to local MoQ subscribers at this address")
	fs.StringVar(&o.rtpOutVideo, "rtp-out-video", "", "decrypt: send track \"video\" as H.264 RTP to this UDP address")
	fs.StringVar(&o.rtpOutAudio, "rtp-out-audio", "", "decrypt: send track \"audio\" as Opus RTP to this UDP address")
	fs.StringVar(&o.metricsAddr, "metrics", "127.0.0.1:9464", "address for /metrics and /healthz (empty: off)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.IntVar(&o.workers, "workers", 0, "pipeline workers (default: GOMAXPROCS)")
	fs.IntVar(&o.maxObject, "max-object-size", 4<<20, "largest object accepted, in bytes")
	fs.IntVar(&o.replayWindow, "replay-window", sidecar.DefaultReplayWindow, "decrypt: counters per sender accepted out of order (replay protection)")
	fs.BoolVar(&o.insecure, "insecure", false, "do not verify the relay's certificate (development only)")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 10*time.Second, "how long shutdown waits for in-flight objects")
	fs.Parse(os.Args[1:])
	applyEnv(fs, "SFRAME_SIDECAR_")

	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fatalf("-log-level: %v", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(o, log); err != nil {
		log.Error("sidecar stopped", "err", err)
		os.Exit(1)
	}
}

// applyEnv sets every flag not given on the command line from the
// environment.
func applyEnv(fs *flag.FlagSet, prefix string) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		env := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && !set[f.Name] {
			if err := f.Value.Set(v); err != nil {
				fatalf("%s: %v", env, err)
			}
		}
	})
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sframe-sidecar: "+format+"\n", args...)
	os.Exit(2)
}

func splitList(s, sep string) []string {
	var out []string
	for _, f := range strings.Split(s, sep) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func run(o options, log *slog.Logger) error {
	mode := sidecar.Encrypt
	switch o.mode {
	case "encrypt":
	case "decrypt":
		mode = sidecar.Decrypt
	default:
		return fmt.Errorf("-mode must be encrypt or decrypt, not %q", o.mode)
	}
	ns := splitList(o.namespace, "/")
	if len(ns) == 0 {
		return errors.New("-namespace is required (e.g. example.org/live)")
	}
	moqCfg := &moq.Config{MaxObjectSize: o.maxObject + 64, InsecureSkipVerify: o.insecure, Logger: log}
	if o.trustAnchor != "" && o.identityCert != "" {
		// Present our certificate to the relay (it lets only certified
		// identities announce) and verify the relay's against the anchor
		// (unless -insecure).
		cert, err := identity.LoadCertificate(o.identityCert, o.identityKey)
		if err != nil {
			return err
		}
		v, err := identity.LoadVerifier(o.trustAnchor)
		if err != nil {
			return err
		}
		moqCfg.TLSConfig = identity.ClientTLS(cert, v)
		moqCfg.TLSConfig.InsecureSkipVerify = o.insecure
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var keys sidecar.KeySource
	switch {
	case o.keyFile != "" && o.csURL != "":
		return errors.New("-key-file and -cs are mutually exclusive: static keys or a security group")
	case o.keyFile != "":
		sk, err := sidecar.LoadKeyFile(o.keyFile)
		if err != nil {
			return err
		}
		sk.ReplayWindow = o.replayWindow
		keys = sk
	case o.csURL != "":
		gk, stop, err := joinGroup(o, moqCfg, reg, log)
		if err != nil {
			return err
		}
		defer stop()
		keys = gk
	default:
		return errors.New("keys: pass -key-file (static key) or -cs, -group, -identity-cert, -identity-key and -trust-anchor (security group)")
	}
	relay := sidecar.NewRelayClient(o.relay, moqCfg, log)
	reg.MustRegister(relay.Collector())

	var sink sidecar.Sink
	var closers []func()
	if mode == sidecar.Encrypt {
		sink = sidecar.PublisherSink{Publishers: relay, Namespace: ns}
	} else {
		var sinks sidecar.Tee
		if o.outFile != "" {
			f, err := os.Create(o.outFile)
			if err != nil {
				return err
			}
			fsink := sidecar.NewFileSink(f)
			sinks = append(sinks, fsink)
			closers = append(closers, func() { fsink.Flush(); f.Close() })
		}
		if o.serve != "" {
			srv, err := sidecar.ListenLocal(o.serve, moqCfg)
			if err != nil {
				return err
			}
			log.Info("serving plaintext tracks", "addr", srv.Addr())
			sinks = append(sinks, sidecar.PublisherSink{Publishers: srv, Namespace: ns})
			closers = append(closers, func() { srv.Close() })
		}
		var outs []sidecar.RTPOutput
		if o.rtpOutVideo != "" {
			outs = append(outs, sidecar.RTPOutput{Track: "video", Codec: sidecar.H264, Addr: o.rtpOutVideo})
		}
		if o.rtpOutAudio != "" {
			outs = append(outs, sidecar.RTPOutput{Track: "audio", Codec: sidecar.Opus, Addr: o.rtpOutAudio})
		}
		if len(outs) > 0 {
			rs, err := sidecar.NewRTPSink(outs)
			if err != nil {
				return err
			}
			sinks = append(sinks, rs)
			closers = append(closers, func() { rs.Close() })
		}
		switch len(sinks) {
		case 0:
			return errors.New("decrypt mode needs an output: -out-file, -serve, -rtp-out-video or -rtp-out-audio")
		case 1:
			sink = sinks[0]
		default:
			sink = sinks
		}
	}
	sc, err := sidecar.New(sidecar.Config{Mode: mode, Namespace: ns, Keys: keys, Sink: sink,
		MaxObjectSize: o.maxObject, Metrics: sidecar.NewMetrics(reg), Logger: log})
	if err != nil {
		return err
	}

	relayCtx, stopRelay := context.WithCancel(context.Background())
	defer stopRelay()
	relayDone := make(chan struct{})
	go func() { relay.Run(relayCtx); close(relayDone) }()

	inputCtx, stopInput := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopInput()
	if o.metricsAddr != "" {
		if err := serveMetrics(o.metricsAddr, reg, relay, log); err != nil {
			return err
		}
	}

	inputs := make(chan error, 3)
	running := 0
	if mode == sidecar.Encrypt {
		for _, in := range []struct {
			addr, track string
			codec       sidecar.Codec
		}{
			{o.rtpVideo, "video", sidecar.H264}, {o.rtpAudio, "audio", sidecar.Opus},
		} {
			if in.addr == "" {
				continue
			}
			conn, err := net.ListenPacket("udp", in.addr)
			if err != nil {
				return err
			}
			if uc, ok := conn.(*net.UDPConn); ok {
				uc.SetReadBuffer(8 << 20) // keyframes arrive as bursts
			}
			relay.Publisher(ns, in.track) // announce now, so the relay can subscribe before the first frame
			src := &sidecar.RTPSource{Conn: conn, Track: in.track, Codec: in.codec, Sidecar: sc}
			log.Info("receiving RTP", "track", in.track, "codec", in.codec, "addr", conn.LocalAddr())
			running++
			go func() { inputs <- src.Run(inputCtx, reg) }()
		}
		if o.source != "" {
			srcNS := ns
			if o.sourceNamespace != "" {
				srcNS = splitList(o.sourceNamespace, "/")
			}
			for _, t := range splitList(o.tracks, ",") {
				relay.Publisher(ns, t)
			}
			local := sidecar.NewRelayClient(o.source, moqCfg, log)
			sidecar.SubscribeInto(inputCtx, local, srcNS, splitList(o.tracks, ","), sc)
			running++
			go func() { local.Run(inputCtx); inputs <- nil }()
		}
		if running == 0 {
			return errors.New("encrypt mode needs an input: -rtp-video, -rtp-audio or -source")
		}
	} else {
		sidecar.SubscribeInto(inputCtx, relay, ns, splitList(o.tracks, ","), sc)
	}
	log.Info("sidecar running", "mode", mode, "relay", o.relay, "namespace", ns)

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
	drained := make(chan struct{})
	go func() { sc.Close(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(o.drainTimeout):
		log.Warn("drain timed out; objects may be lost")
	}
	stopRelay()
	<-relayDone
	for _, c := range closers {
		c()
	}
	st := sc.Stats()
	log.Info("sidecar stopped", "objects", st.Objects, "bytes", st.Bytes, "drops", st.Drops, "errors", st.Errors, "auth_failures", st.AuthFailed)
	return runErr
}

func serveMetrics(addr string, reg prometheus.Gatherer, relay *sidecar.RelayClient, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Millisecond)
		defer cancel()
		if relay.WaitConnected(ctx) != nil {
			http.Error(w, "relay not connected", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	log.Info("metrics", "addr", ln.Addr())
	go http.Serve(ln, mux)
	return nil
}

// joinGroup joins the security group (group mode) and returns its key
// source. The member has its own MoQ session to the relay for the group
// tracks; if that session breaks it keeps up from the CS archive.
func joinGroup(o options, moqCfg *moq.Config, reg prometheus.Registerer, log *slog.Logger) (*sidecar.GroupKeys, func(), error) {
	if o.groupName == "" || o.identityCert == "" || o.identityKey == "" || o.trustAnchor == "" {
		return nil, nil, errors.New("-cs needs -group, -identity-cert, -identity-key and -trust-anchor (make them with sframe identity)")
	}
	cert, err := identity.LoadCertificate(o.identityCert, o.identityKey)
	if err != nil {
		return nil, nil, err
	}
	verifier, err := identity.LoadVerifier(o.trustAnchor)
	if err != nil {
		return nil, nil, err
	}
	policy := identity.AllowAll()
	if o.policy != "" {
		if policy, err = identity.LoadPolicy(o.policy); err != nil {
			return nil, nil, err
		}
	}
	// The CS's certificate is always verified: against -cs-ca if given,
	// else the trust anchor. -insecure is about the relay only.
	csRoots := verifier.Roots()
	if o.csCA != "" {
		pem, err := os.ReadFile(o.csCA)
		if err != nil {
			return nil, nil, fmt.Errorf("-cs-ca: %w", err)
		}
		csRoots = x509.NewCertPool()
		if !csRoots.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("-cs-ca %s: no PEM certificate", o.csCA)
		}
	}
	tc := identity.ClientTLS(cert, verifier)
	tc.RootCAs = csRoots
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	cs, err := coord.NewClient(o.csURL, hc)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sess, err := moq.Dial(ctx, o.relay, moqCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("group mode: relay: %w", err)
	}
	m, err := group.New(group.Config{Certificate: cert, Verifier: verifier, Policy: policy, Group: o.groupName, CS: cs, Session: sess,
		Prefix: splitList(o.groupPrefix, "/"), Logger: log,
		ScheduleOptions: []keyschedule.Option{keyschedule.WithReplayWindow(o.replayWindow)}})
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	if err := m.Join(ctx); err != nil {
		m.Close()
		sess.Close()
		return nil, nil, fmt.Errorf("group mode: joining %q: %w", o.groupName, err)
	}
	// The roster is logged on the EventRoster of the join, below.
	log.Info("joined security group", "group", o.groupName, "identity", m.Identity(), "epoch", m.Epoch())
	reg.MustRegister(sidecar.GroupCollector(m))
	go func() {
		for ev := range m.Events() {
			switch ev.Type {
			case group.EventRemoved:
				log.Warn("removed from the security group: no more sending", "group", o.groupName, "epoch", ev.Epoch)
			case group.EventRefused:
				log.Error("security group: credential refused", "epoch", ev.Epoch, "err", ev.Err)
			case group.EventStuck:
				log.Error("security group: the accepted commit cannot be processed; staying on the last good epoch", "epoch", ev.Epoch, "err", ev.Err)
			case group.EventError:
				log.Warn("security group", "err", ev.Err)
			case group.EventRoster:
				logRoster(m, log)
			default:
				log.Info("security group epoch", "event", ev.Type.String(), "epoch", ev.Epoch, "members", ev.Members)
			}
		}
	}()
	stop := func() {
		lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.Leave(lctx); err != nil {
			log.Warn("leaving the security group", "err", err)
		}
		lcancel()
		m.Close()
		sess.Close()
	}
	return sidecar.NewGroupKeys(m), stop, nil
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
