#!/usr/bin/env bash
# The demo: ffmpeg encodes a test pattern and a tone to RTP for ~10 s; an
# encrypting sidecar seals every frame with SFrame and publishes it to a MoQ
# relay; a decrypting sidecar subscribes through the relay, writes the
# plaintext frames to a record file and sends them on as RTP, which ffmpeg
# records into an MP4. The relay only ever holds ciphertext. What is worth
# looking at stays in demo-out/ (DEMO_OUT): the MP4, one frame as PNG, the
# video extracted from the record file, and the logs. The decrypting sidecar
# also serves the player page (WHEP): open the URL it prints in a browser.
# DEMO_SECONDS=0 streams until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${DEMO_SECONDS:-10}"
bin="$PWD/bin"
out="${DEMO_OUT:-$PWD/demo-out}"
work="$(mktemp -d)"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
rm -rf "$out"
mkdir -p "$out"

echo "== building"
make -s build

echo "== 1. the SFrame CLI: a round trip, the header inspected, the RFC 9605 vectors"
key=000102030405060708090a0b0c0d0e0f
printf 'hello, relay-proof media' |
	"$bin/sframe" encrypt -suite 4 -key "$key" -kid 291 -ctr 17767 -metadata "track=video/1" >"$work/demo.sframe"
"$bin/sframe" inspect -suite 4 <"$work/demo.sframe"
echo -n "decrypted:  "
"$bin/sframe" decrypt -suite 4 -key "$key" -metadata "track=video/1" <"$work/demo.sframe"
echo
"$bin/sframe" verify-vectors sframe/testdata/test-vectors.json

if [ "$seconds" = 0 ]; then
	echo "== 2. live media through a MoQ relay until Ctrl-C: ffmpeg -> encrypt -> relay -> decrypt"
else
	echo "== 2. live media through a MoQ relay for ${seconds}s: ffmpeg -> encrypt -> relay -> decrypt"
fi
printf '{"suite": 4, "base_key": "%s"}\n' "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" >"$work/key.json"
metric() { curl -sf "http://$1/metrics" | awk -v n="$2" '$1 == n {print $2}' | head -1; }
wait_http() { for _ in $(seq 1 200); do curl -sf "http://$1/healthz" >/dev/null && return 0; sleep 0.05; done; echo "demo: $1 not healthy" >&2; exit 1; }

"$bin/moq-relay" -listen 127.0.0.1:14443 -metrics 127.0.0.1:19090 -log-level warn 2>"$out/relay.log" &
pids+=($!)
wait_http 127.0.0.1:19090
common=(-relay 127.0.0.1:14443 -insecure -namespace demo.example/live -key-file "$work/key.json" -log-level warn)
"$bin/sframe-sidecar" -mode encrypt "${common[@]}" -rtp-video 127.0.0.1:15004 -rtp-audio 127.0.0.1:15006 \
	-metrics 127.0.0.1:19464 2>"$out/encrypt.log" &
pids+=($!)
wait_http 127.0.0.1:19464
"$bin/sframe-sidecar" -mode decrypt "${common[@]}" -tracks video,audio -out-file "$out/decrypted.rec" \
	-rtp-out-video 127.0.0.1:16004 -rtp-out-audio 127.0.0.1:16006 -rtp-out-sdp "$out/decrypted.sdp" \
	-whep 127.0.0.1:18080 -web 127.0.0.1:18080 -metrics 127.0.0.1:19465 2>"$out/decrypt.log" &
dec=$!
pids+=($dec)
wait_http 127.0.0.1:19465
for _ in $(seq 1 200); do [ "$(metric 127.0.0.1:19464 sidecar_relay_subscribers)" = 2 ] && break; sleep 0.05; done
# The recorder of the decrypted RTP, from the SDP the sidecar wrote.
ffmpeg -hide_banner -loglevel error -nostdin -protocol_whitelist file,udp,rtp -i "$out/decrypted.sdp" \
	-c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac -y "$out/decrypted.mp4" 2>"$out/recorder.log" &
rec=$!
pids+=($rec)

duration=(-t "$seconds")
[ "$seconds" = 0 ] && duration=()
echo "  player (decrypted, over WebRTC): http://127.0.0.1:18080/"
ffmpeg -hide_banner -loglevel error -nostdin -re \
	"${duration[@]}" -f lavfi -i "testsrc=size=640x360:rate=30" "${duration[@]}" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
	-map 0:v -c:v libx264 -preset ultrafast -tune zerolatency -g 30 -bf 0 -pix_fmt yuv420p -payload_type 96 \
	-f rtp "rtp://127.0.0.1:15004?pkt_size=1200" \
	-map 1:a -c:a libopus -b:a 64k -payload_type 111 -f rtp "rtp://127.0.0.1:15006" >"$work/source.sdp" &
ff=$!
pids+=($ff)
stopped=0
trap 'stopped=1; kill -INT "$ff" 2>/dev/null || true' INT # Ctrl-C ends the stream, then the summary
while [ "$stopped" = 0 ] && kill -0 "$ff" 2>/dev/null; do
	# Downstream first: read later, the upstream counts are never behind.
	decrypted=$(metric 127.0.0.1:19465 sidecar_objects_out_total)
	failures=$(metric 127.0.0.1:19465 sidecar_auth_failures_total)
	forwarded=$(metric 127.0.0.1:19090 moq_relay_objects_out_total)
	printf '\r  sealed %6s objects %9s bytes | relay forwarded %6s | decrypted %6s | auth failures %s  ' \
		"$(metric 127.0.0.1:19464 sidecar_objects_out_total)" "$(metric 127.0.0.1:19464 sidecar_bytes_out_total)" \
		"$forwarded" "$decrypted" "$failures"
	sleep 0.5
done
trap - INT
wait "$ff" 2>/dev/null || true
sleep 1
sealed=$(metric 127.0.0.1:19464 sidecar_objects_out_total)
decrypted=$(metric 127.0.0.1:19465 sidecar_objects_out_total)
p99=$(curl -sf http://127.0.0.1:19465/metrics | awk '/^sidecar_latency_seconds_count/ {n=$2} /^sidecar_latency_seconds_bucket/ {split($1,a,"\""); b[++k]=a[2]; c[k]=$2} END {for (i=1;i<=k;i++) if (c[i] >= 0.99*n) {print b[i]; exit}}')
failures=$(metric 127.0.0.1:19465 sidecar_auth_failures_total)
lost=$(metric 127.0.0.1:19465 sidecar_objects_lost_total)
kill -TERM "$dec"; wait "$dec" 2>/dev/null || true
kill -INT "$rec"; wait "$rec" 2>/dev/null || true # ffmpeg finishes the MP4 on SIGINT
"$bin/sframe-sidecar" extract -in "$out/decrypted.rec" -track video -out "$out/decrypted.h264" 2>/dev/null
ffmpeg -hide_banner -loglevel error -nostdin -ss 2 -i "$out/decrypted.mp4" -frames:v 1 -y "$out/frame.png"
frames() { ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$@"; }
echo
echo "== summary"
echo "  objects sealed:     $sealed"
echo "  objects decrypted:  $decrypted (lost on the way, counted by the receiver: ${lost:-0})"
echo "  auth failures:      $failures"
echo "  decrypt p99 added latency <= ${p99}s"
echo "  decrypted video, recorded from the sidecar's RTP output: $out/decrypted.mp4 ($(frames "$out/decrypted.mp4") frames)"
echo "  one frame of it:    $out/frame.png"
echo "  the video track of the record file (sframe-sidecar extract): $out/decrypted.h264 ($(frames -f h264 "$out/decrypted.h264") frames)"
echo "  logs:               $out/*.log"
echo "  the player page was at http://127.0.0.1:18080/ (WHEP, served by the decrypting sidecar)"
