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
// SFRAME_SIDECAR_KEY_FILE); -h lists them. Flags win over the environment,
// which wins over the defaults; an empty variable counts as unset.
//
// The record file of -out-file is read back with
//
//	sframe-sidecar extract -in media.rec -track video -out video.h264
//
// Exit codes: 0 after -h or a clean shutdown (SIGINT, SIGTERM), 2 for bad
// flags or environment, 1 if the sidecar failed.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/moqsframe/moqsframe/cmd/internal/cli"
	"github.com/moqsframe/moqsframe/group"
	"github.com/moqsframe/moqsframe/sidecar"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "extract" {
		os.Args = os.Args[1:]
		cli.Main("sframe-sidecar extract", parseExtractFlags, runExtract)
	}
	cli.Main("sframe-sidecar", parseFlags, run)
}

// envPrefix starts the environment variable of every flag.
const envPrefix = "SFRAME_SIDECAR_"

const synopsis = `usage: sframe-sidecar -mode encrypt|decrypt -namespace NS (-key-file FILE | -cs URL -group NAME ...) [flags]

Encrypt: plaintext from -rtp-video, -rtp-audio or -source becomes SFrame tracks on -relay.
Decrypt: SFrame tracks from -relay become plaintext in -out-file, -serve, -rtp-out-video or -rtp-out-audio.`

// Config is what the flags and environment say; parseFlags has checked
// it, run loads the files it names.
type Config struct {
	Mode      sidecar.Mode
	Relay     string   // MoQ relay address
	Namespace []string // of the tracks on the relay
	Tracks    []string // subscribed in decrypt mode and from Source
	Insecure  bool     // do not verify the relay's certificate

	// Keys: KeyFile (static key) or CS (security group), never both.
	KeyFile      string
	CS           string // coordination service URL
	Group        string
	IdentityCert string // also presented to the relay, with TrustAnchor
	IdentityKey  string
	TrustAnchor  string
	Policy       string   // empty: any identity the anchor certifies
	CSCA         string   // empty: TrustAnchor
	GroupPrefix  []string // namespace prefix of the group tracks
	// LivenessTimeout: this member sends heartbeats; members silent this
	// long are removed (the CS's -liveness-timeout).
	LivenessTimeout time.Duration

	// Encrypt inputs.
	Source             string         // local MoQ publisher of the plaintext tracks
	SourceNamespace    []string       // at Source (default: Namespace)
	RTPVideo, RTPAudio string         // UDP addresses for video and Opus RTP
	VideoCodec         sidecar.Codec  // of -rtp-video and -rtp-out-video
	RTPSource          netip.AddrPort // the one RTP sender taken (port 0: any port); zero: the first sender

	// Decrypt outputs.
	OutFile                  string // record file
	Serve                    string // local MoQ server address
	RTPOutVideo, RTPOutAudio string // UDP destinations
	RTPOutSDP                string // file describing the RTP outputs

	Metrics string // /metrics and /healthz address; empty: off

	// WebRTC (webrtc.go): WHIP ingest (encrypt), WHEP egress and the
	// player page (decrypt).
	WHIP, WHIPToken, WHEP, WHEPToken, Web           string
	WHIPMaxSessions, WHIPMaxBitrate, WHEPMaxViewers int

	RelayTimeout         time.Duration // QUIC idle timeout (dead relay detection) and handshake bound
	ReconnectBuffer      time.Duration // encrypt: how long sealed objects are kept for replay after a reconnect
	ReconnectBufferBytes int           // encrypt: per track bound of the same
	LogLevel             slog.Level
	Workers              int // pipeline workers; 0: GOMAXPROCS
	MaxObjectSize        int
	ReplayWindow         int
	DrainTimeout         time.Duration
}

// parseFlags parses args (without the program name) and the environment
// (getenv) into a checked Config. Errors name the flag.
func parseFlags(args []string, getenv func(string) string) (Config, error) {
	var (
		c                                 Config
		mode, namespace, tracks, logLevel string
		groupPrefix, sourceNamespace      string
		rtpSource, videoCodec             string
	)
	fs := flag.NewFlagSet("sframe-sidecar", flag.ContinueOnError)
	fs.StringVar(&mode, "mode", "encrypt", "encrypt (plaintext in, SFrame to the relay) or decrypt (SFrame from the relay, plaintext out)")
	fs.StringVar(&c.Relay, "relay", "127.0.0.1:4443", "MoQ relay address (QUIC)")
	fs.StringVar(&namespace, "namespace", "", "track namespace on the relay, fields separated by /")
	fs.StringVar(&tracks, "tracks", "video", "track names, comma-separated (subscribed in decrypt mode and from -source)")
	fs.StringVar(&c.KeyFile, "key-file", "", `static key file: {"suite": 4, "base_key": "<hex>"}`)
	fs.StringVar(&c.CS, "cs", "", "group mode: coordination service URL (https://host:port); keys come from the security group (excludes -key-file)")
	fs.StringVar(&c.Group, "group", "", "group mode: security group name")
	fs.StringVar(&c.IdentityCert, "identity-cert", "", "group mode: this member's certificate (PEM, from sframe identity issue); the identity is the name in it")
	fs.StringVar(&c.IdentityKey, "identity-key", "", "group mode: the certificate's private key (PEM)")
	fs.StringVar(&c.TrustAnchor, "trust-anchor", "", "group mode: the deployment's CA certificate (PEM); every other member's certificate, the CS's and the relay's must chain to it")
	fs.StringVar(&c.Policy, "policy", "", `group mode: admission policy file, {"groups": {"room": ["alice", "bob"]}}; members outside it are refused (default: any name the trust anchor certifies)`)
	fs.StringVar(&c.CSCA, "cs-ca", "", "group mode: PEM certificate(s) to trust for the CS (default: -trust-anchor)")
	fs.DurationVar(&c.LivenessTimeout, "liveness-timeout", group.DefaultLivenessTimeout, "group mode: members silent this long (crashed, cut off) are removed by a committer; the CS's -liveness-timeout; negative: never")
	fs.StringVar(&groupPrefix, "group-prefix", "moqsframe/cs", "group mode: MoQ namespace prefix of the group tracks (sframe-cs -namespace-prefix)")
	fs.StringVar(&c.Source, "source", "", "encrypt: address of a local MoQ publisher of the plaintext tracks")
	fs.StringVar(&sourceNamespace, "source-namespace", "", "encrypt: namespace of the plaintext tracks at -source (default: -namespace)")
	fs.StringVar(&c.RTPVideo, "rtp-video", "", "encrypt: UDP address to receive video RTP on (track \"video\"; codec -video-codec)")
	fs.StringVar(&videoCodec, "video-codec", "h264", "RTP video payload format of -rtp-video and -rtp-out-video: h264, h265, vp8 or vp9")
	fs.StringVar(&c.RTPAudio, "rtp-audio", "", "encrypt: UDP address to receive Opus RTP on (track \"audio\")")
	fs.StringVar(&rtpSource, "rtp-source", "", "encrypt: take RTP only from this sender, HOST or HOST:PORT (default: the first sender, until it is quiet for 3s); others are dropped and counted")
	fs.StringVar(&c.OutFile, "out-file", "", "decrypt: write plaintext objects to this file (sidecar record format)")
	fs.StringVar(&c.Serve, "serve", "", "decrypt: serve plaintext tracks to local MoQ subscribers at this address")
	fs.StringVar(&c.RTPOutVideo, "rtp-out-video", "", "decrypt: send track \"video\" as RTP (codec -video-codec) to this UDP address")
	fs.StringVar(&c.RTPOutAudio, "rtp-out-audio", "", "decrypt: send track \"audio\" as Opus RTP to this UDP address")
	fs.StringVar(&c.RTPOutSDP, "rtp-out-sdp", "", "decrypt: write an SDP file describing -rtp-out-video/-rtp-out-audio, for ffmpeg or a player (ffmpeg -protocol_whitelist file,udp,rtp -i FILE)")
	fs.StringVar(&c.WHIP, "whip", "", "encrypt: serve WHIP (RFC 9725) at http://ADDR/whip for OBS and browsers (tracks video and audio), and a publish page at http://ADDR/")
	fs.StringVar(&c.WHIPToken, "whip-token", "", "encrypt: bearer token WHIP publishers must send (OBS: Settings > Stream > Bearer Token); empty: none")
	fs.IntVar(&c.WHIPMaxSessions, "whip-max-sessions", 4, "encrypt: concurrent WHIP sessions")
	fs.IntVar(&c.WHIPMaxBitrate, "whip-max-bitrate", 20_000_000, "encrypt: per WHIP session media bitrate, bits/s (announced to the publisher; a session above it for 3 s is closed)")
	fs.StringVar(&c.WHEP, "whep", "", "decrypt: serve WHEP (draft-ietf-wish-whep) at http://ADDR/whep: browsers receive the decrypted tracks video (H.264) and audio (Opus)")
	fs.StringVar(&c.WHEPToken, "whep-token", "", "decrypt: bearer token WHEP viewers must send; empty: none")
	fs.IntVar(&c.WHEPMaxViewers, "whep-max-viewers", 16, "decrypt: concurrent WHEP viewers")
	fs.StringVar(&c.Web, "web", "", "decrypt: serve the player page at http://ADDR/ (needs -whep; may be the same address)")
	fs.StringVar(&c.Metrics, "metrics", "", "address for /metrics and /healthz, e.g. 127.0.0.1:9464 (default: off)")
	fs.DurationVar(&c.RelayTimeout, "relay-timeout", 5*time.Second, "a relay silent this long is taken as gone (QUIC idle timeout; keep-alives at half of it) and reconnected")
	fs.DurationVar(&c.ReconnectBuffer, "reconnect-buffer", sidecar.DefaultReconnectBuffer, "encrypt: sealed objects are kept this long and published again after a relay outage (older ones are dropped and counted)")
	fs.IntVar(&c.ReconnectBufferBytes, "reconnect-buffer-bytes", sidecar.DefaultReconnectBufferBytes, "encrypt: bound of the reconnect buffer per track, in bytes")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (logs go to stderr)")
	fs.IntVar(&c.Workers, "workers", 0, "pipeline workers (default: GOMAXPROCS)")
	fs.IntVar(&c.MaxObjectSize, "max-object-size", 4<<20, "largest object accepted, in bytes")
	fs.IntVar(&c.ReplayWindow, "replay-window", sidecar.DefaultReplayWindow, "decrypt: counters per sender accepted out of order (replay protection)")
	fs.BoolVar(&c.Insecure, "insecure", false, "do not verify the relay's certificate (development only)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 10*time.Second, "how long shutdown waits for in-flight objects")
	if _, err := cli.Parse(fs, args, envPrefix, synopsis, getenv); err != nil {
		return c, err
	}

	var err error
	if c.LogLevel, err = cli.ParseLevel(logLevel); err != nil {
		return c, err
	}
	switch {
	case c.RelayTimeout < 100*time.Millisecond:
		return c, fmt.Errorf("-relay-timeout %v is too short (at least 100ms; keep-alives go at half of it)", c.RelayTimeout)
	case c.ReconnectBuffer < 0 || c.ReconnectBufferBytes < 0:
		return c, fmt.Errorf("-reconnect-buffer and -reconnect-buffer-bytes must not be negative")
	}
	switch mode {
	case "encrypt":
		c.Mode = sidecar.Encrypt
	case "decrypt":
		c.Mode = sidecar.Decrypt
	default:
		return c, fmt.Errorf("-mode must be encrypt or decrypt, not %q", mode)
	}
	if c.Namespace = splitList(namespace, "/"); len(c.Namespace) == 0 {
		return c, fmt.Errorf("-namespace is required (e.g. example.org/live)")
	}
	switch c.VideoCodec = sidecar.Codec(videoCodec); c.VideoCodec {
	case sidecar.H264, sidecar.H265, sidecar.VP8, sidecar.VP9:
	default:
		return c, fmt.Errorf("-video-codec %q: want h264, h265, vp8 or vp9", videoCodec)
	}
	if rtpSource != "" {
		if c.RTPSource, err = parseSource(rtpSource); err != nil {
			return c, fmt.Errorf("-rtp-source %q: want an IP address or IP:PORT", rtpSource)
		}
	}
	c.Tracks = splitList(tracks, ",")
	c.GroupPrefix = splitList(groupPrefix, "/")
	c.SourceNamespace = c.Namespace
	if sourceNamespace != "" {
		c.SourceNamespace = splitList(sourceNamespace, "/")
	}
	switch {
	case c.KeyFile != "" && c.CS != "":
		return c, fmt.Errorf("-key-file and -cs are mutually exclusive: static keys or a security group")
	case c.KeyFile == "" && c.CS == "":
		return c, fmt.Errorf("keys: pass -key-file (static key) or -cs, -group, -identity-cert, -identity-key and -trust-anchor (security group)")
	case c.CS != "" && (c.Group == "" || c.IdentityCert == "" || c.IdentityKey == "" || c.TrustAnchor == ""):
		return c, fmt.Errorf("-cs needs -group, -identity-cert, -identity-key and -trust-anchor (make them with sframe identity)")
	}
	switch {
	case c.Mode == sidecar.Encrypt && c.RTPVideo == "" && c.RTPAudio == "" && c.Source == "" && c.WHIP == "":
		return c, fmt.Errorf("encrypt mode needs an input: -rtp-video, -rtp-audio, -source or -whip")
	case c.Mode == sidecar.Decrypt && c.OutFile == "" && c.Serve == "" && c.RTPOutVideo == "" && c.RTPOutAudio == "" && c.WHEP == "":
		return c, fmt.Errorf("decrypt mode needs an output: -out-file, -serve, -rtp-out-video, -rtp-out-audio or -whep")
	case c.RTPOutSDP != "" && c.RTPOutVideo == "" && c.RTPOutAudio == "":
		return c, fmt.Errorf("-rtp-out-sdp describes -rtp-out-video and -rtp-out-audio: pass at least one")
	}
	return c, checkWebRTCFlags(c)
}

// parseSource parses HOST or HOST:PORT (port 0: any).
func parseSource(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a.Unmap(), 0), nil
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
