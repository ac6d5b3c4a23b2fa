package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moqsframe/moqsframe/cmd/internal/cli"
	"github.com/moqsframe/moqsframe/group"
	"github.com/moqsframe/moqsframe/sidecar"
	"github.com/moqsframe/moqsframe/webrtc/player"
	"github.com/moqsframe/moqsframe/webrtc/whep"
	"github.com/moqsframe/moqsframe/webrtc/whip"
)

// checkWebRTCFlags checks -whip, -whep and -web against the mode.
func checkWebRTCFlags(c Config) error {
	switch {
	case c.WHIP != "" && c.Mode != sidecar.Encrypt:
		return fmt.Errorf("-whip is an input: it needs -mode encrypt")
	case (c.WHEP != "" || c.Web != "") && c.Mode != sidecar.Decrypt:
		return fmt.Errorf("-whep and -web are outputs: they need -mode decrypt")
	case c.Web != "" && c.WHEP == "":
		return fmt.Errorf("-web serves a player that plays -whep: pass -whep too")
	case c.WHIPMaxSessions < 1 || c.WHEPMaxViewers < 1 || c.WHIPMaxBitrate < 100_000:
		return fmt.Errorf("-whip-max-sessions and -whep-max-viewers must be at least 1, -whip-max-bitrate at least 100000")
	}
	return nil
}

// webRTC is the sidecar's WebRTC side: the listeners of -whip, -whep and
// -web, bound by listenWebRTC (before the group is joined, like every
// listener) and served by start.
type webRTC struct {
	whipLn, whepLn, webLn net.Listener
	whep                  *whep.Server
	stops                 []func()
}

// listenWebRTC binds the WebRTC listeners; -web may share -whep's address.
func listenWebRTC(cfg Config, log *slog.Logger) (rtc *webRTC, err error) {
	rtc = &webRTC{}
	defer func() {
		if err != nil {
			rtc.close()
		}
	}()
	listen := func(flag, addr string) (net.Listener, error) {
		if addr == "" {
			return nil, nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		return ln, nil
	}
	if rtc.whipLn, err = listen("-whip", cfg.WHIP); err != nil {
		return nil, err
	}
	if rtc.whepLn, err = listen("-whep", cfg.WHEP); err != nil {
		return nil, err
	}
	if cfg.Web != "" && cfg.Web != cfg.WHEP {
		if rtc.webLn, err = listen("-web", cfg.Web); err != nil {
			return nil, err
		}
	}
	if rtc.whepLn != nil {
		var tracks []whep.Track
		for _, t := range cfg.Tracks {
			switch t {
			case "video":
				tracks = append(tracks, whep.Track{Name: t, Codec: whep.Codec(cfg.VideoCodec)})
			case "audio":
				tracks = append(tracks, whep.Track{Name: t, Codec: whep.Opus})
			}
		}
		if len(tracks) == 0 {
			return nil, fmt.Errorf("-whep sends the tracks video (-video-codec) and audio (Opus): add them to -tracks")
		}
		rtc.whep, err = whep.New(whep.Config{Tracks: tracks, Token: cfg.WHEPToken, MaxViewers: cfg.WHEPMaxViewers,
			ICEIPs: iceIPs(rtc.whepLn), Logger: log})
		if err != nil {
			return nil, err
		}
	}
	return rtc, nil
}

// iceIPs keeps ICE on the listener's IP when it names one (loopback by
// default), else every interface.
func iceIPs(ln net.Listener) []net.IP {
	a, ok := ln.Addr().(*net.TCPAddr)
	if !ok || a.IP.IsUnspecified() {
		return nil
	}
	return []net.IP{a.IP}
}

// sink adds the WHEP viewers to the decrypting sidecar's outputs.
func (rtc *webRTC) sink(s sidecar.Sink) sidecar.Sink {
	switch {
	case rtc.whep == nil:
		return s
	case s == nil:
		return rtc.whep
	}
	return sidecar.Tee{s, rtc.whep}
}

// start serves the listeners: WHIP feeds sc (its tracks announced on the
// relay), WHEP and the player read from it. WHIP sessions end when ctx
// does, before the sidecar drains; stop ends the rest.
func (rtc *webRTC) start(ctx context.Context, cfg Config, sc *sidecar.Sidecar, relay *sidecar.RelayClient, reg prometheus.Registerer,
	member *group.Member, log *slog.Logger) (stop func()) {
	if rtc.whipLn != nil {
		for _, t := range []string{"video", "audio"} {
			relay.Publisher(cfg.Namespace, t) // announce now, so the relay can subscribe before the first frame
		}
		srv, err := whip.New(whip.Config{Sink: sc, OnTrack: func(t string) { relay.Publisher(cfg.Namespace, t) },
			Token: cfg.WHIPToken, MaxSessions: cfg.WHIPMaxSessions, MaxBitrate: cfg.WHIPMaxBitrate,
			ICEIPs: iceIPs(rtc.whipLn), Logger: log})
		if err != nil { // only a broken codec table gets here
			log.Error("-whip", "err", err)
		} else {
			reg.MustRegister(srv)
			mux := http.NewServeMux()
			srv.Register(mux)
			mux.Handle("/", player.PublishHandler())
			rtc.stops = append(rtc.stops, cli.Serve(rtc.whipLn, mux, log))
			stopAfter := context.AfterFunc(ctx, srv.Close)
			rtc.stops = append(rtc.stops, func() { stopAfter(); srv.Close() })
			log.Info("WHIP ingest", "url", "http://"+rtc.whipLn.Addr().String()+"/whip", "publish_page", "http://"+rtc.whipLn.Addr().String()+"/")
		}
	}
	if rtc.whep != nil {
		reg.MustRegister(rtc.whep)
		mux := http.NewServeMux()
		rtc.whep.Register(mux)
		web := player.Handler(player.Config{WHEP: whepURL(rtc.whepLn), Stats: playerStats(cfg, sc, rtc.whep, member)})
		if cfg.Web != "" && rtc.webLn == nil { // one address for both
			mux.Handle("/", web)
		}
		rtc.stops = append(rtc.stops, cli.Serve(rtc.whepLn, mux, log))
		log.Info("WHEP egress", "url", "http://"+rtc.whepLn.Addr().String()+"/whep")
		if rtc.webLn != nil {
			rtc.stops = append(rtc.stops, cli.Serve(rtc.webLn, web, log))
		}
		if cfg.Web != "" {
			addr := rtc.whepLn.Addr().String()
			if rtc.webLn != nil {
				addr = rtc.webLn.Addr().String()
			}
			log.Info("player", "url", "http://"+addr+"/")
		}
	}
	return func() {
		for i := len(rtc.stops) - 1; i >= 0; i-- {
			rtc.stops[i]()
		}
		rtc.stops = nil
	}
}

// whepURL is the WHEP URL the player page uses: absolute when the
// listener has an IP, else ":PORT/whep" on the page's host.
func whepURL(ln net.Listener) string {
	a := ln.Addr().(*net.TCPAddr)
	if a.IP.IsUnspecified() {
		return fmt.Sprintf(":%d/whep", a.Port)
	}
	return "http://" + a.String() + "/whep"
}

// playerStats reads what the player page shows of the sidecar.
func playerStats(cfg Config, sc *sidecar.Sidecar, w *whep.Server, member *group.Member) func() player.Stats {
	return func() player.Stats {
		st := player.Stats{ObjectsDecrypted: uint64(counterValue(sc.M.ObjectsOut)), AuthFailures: uint64(counterValue(sc.M.AuthFailures)),
			ObjectsLost: uint64(counterValue(sc.M.Lost)), Viewers: w.Viewers()}
		if member != nil {
			st.Group, st.Epoch = cfg.Group, member.Epoch()
			for _, e := range member.Roster() {
				st.Roster = append(st.Roster, e.Name)
			}
		}
		return st
	}
}

// close ends the WHEP viewers and closes the listeners (after stop, or
// when run fails before start).
func (rtc *webRTC) close() {
	if rtc.whep != nil {
		rtc.whep.Close()
	}
	for _, ln := range []net.Listener{rtc.whipLn, rtc.whepLn, rtc.webLn} {
		if ln != nil {
			ln.Close()
		}
	}
}
