package sidecar

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moqsframe/moqsframe/group"
	"github.com/moqsframe/moqsframe/rtpingest"
)

// sidecarMetrics are the metrics of a sframe-sidecar process, as the
// hand-written exposition had them (name, type, help): dashboards read
// these names.
var sidecarMetrics = []string{
	"sidecar_auth_failures_total counter Objects that failed SFrame authentication.",
	"sidecar_bytes_in_total counter Payload bytes received for processing.",
	"sidecar_bytes_out_total counter Payload bytes written to the sink.",
	"sidecar_drops_total counter Objects dropped: oversized, queue closed, or malformed.",
	"sidecar_duplicates_total counter Objects received again or too late, dropped (decrypt).",
	"sidecar_errors_total counter Objects that failed to seal or open for any reason.",
	"sidecar_group_heartbeats_total counter Liveness heartbeats this member sent to the CS.",
	"sidecar_group_members gauge Members in the verified roster of the security group's current epoch.",
	"sidecar_group_refusals_total counter Credentials this member refused (KeyPackages, Welcomes, commits).",
	"sidecar_group_removed_for_silence_total counter Silent members this member's commits removed.",
	"sidecar_group_silent_members gauge Members the CS has not heard from for longer than the liveness timeout.",
	"sidecar_latency_seconds histogram Time from receiving an object to writing it to the sink.",
	"sidecar_objects_in_total counter Objects received for processing.",
	"sidecar_objects_lost_total counter Objects that never arrived: gaps in a sender's SFrame counter sequence (decrypt).",
	"sidecar_objects_missing gauge Objects missing from their senders' SFrame counter sequences, still within the replay window (decrypt).",
	"sidecar_objects_out_total counter Objects sealed or opened and written to the sink.",
	"sidecar_objects_unpublished_total counter Sealed objects that never reached the relay: evicted from the reconnect buffer during an outage (encrypt).",
	"sidecar_relay_connected gauge 1 while a MoQ session to the relay is up.",
	"sidecar_relay_dropped_total counter Objects dropped for a relay subscription too slow to keep up (its queue stayed full).",
	"sidecar_relay_reconnects_total counter Times the relay session was lost and re-established.",
	"sidecar_relay_subscribers gauge Subscribers the relay holds on this sidecar's published tracks.",
	"sidecar_rtp_audio_buffered gauge Datagrams held for reordering or an incomplete frame.",
	"sidecar_rtp_audio_datagrams_total counter Datagrams by outcome: delivered (in a frame), discarded (in a dropped frame), late, duplicate, empty (padding, DTX), rtcp, malformed, foreign_ssrc, other_sender.",
	"sidecar_rtp_audio_frames_dropped_total counter Frames dropped: damaged by loss, malformed, or before the source's first keyframe.",
	"sidecar_rtp_audio_frames_total counter Frames delivered.",
	"sidecar_rtp_audio_lost_total counter RTP packets missing by sequence number.",
	"sidecar_rtp_audio_packets_total counter Datagrams read from the RTP port.",
	"sidecar_rtp_audio_source_changes_total counter New RTP sources (SSRC) adopted, or sequence restarts.",
	"sidecar_rtp_video_buffered gauge Datagrams held for reordering or an incomplete frame.",
	"sidecar_rtp_video_datagrams_total counter Datagrams by outcome: delivered (in a frame), discarded (in a dropped frame), late, duplicate, empty (padding, DTX), rtcp, malformed, foreign_ssrc, other_sender.",
	"sidecar_rtp_video_frames_dropped_total counter Frames dropped: damaged by loss, malformed, or before the source's first keyframe.",
	"sidecar_rtp_video_frames_total counter Frames delivered.",
	"sidecar_rtp_video_lost_total counter RTP packets missing by sequence number.",
	"sidecar_rtp_video_packets_total counter Datagrams read from the RTP port.",
	"sidecar_rtp_video_source_changes_total counter New RTP sources (SSRC) adopted, or sequence restarts.",
	"sidecar_sink_errors_total counter Objects the sink refused.",
}

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	sc, err := New(Config{Mode: Decrypt, Namespace: []string{"ns"}, Keys: &StaticKeys{}, Sink: &captureSink{}, Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	reg.MustRegister(LossCollector(sc), NewRelayClient("127.0.0.1:1", nil, nil).Collector(),
		groupCollector(func() float64 { return 3 }, func() group.Stats { return group.Stats{} }),
		rtpCollector("video", func() (rtpingest.Stats, uint64) { return rtpingest.Stats{}, 0 }),
		rtpCollector("audio", func() (rtpingest.Stats, uint64) { return rtpingest.Stats{}, 0 }))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		got = append(got, fmt.Sprintf("%s %s %s", mf.GetName(), strings.ToLower(mf.GetType().String()), mf.GetHelp()))
	}
	want := sidecarMetrics
	if !slices.Equal(got, want) {
		t.Errorf("metrics:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestLatencyBuckets: the latency histogram keeps its buckets (10 µs to
// 10 s), which the integration tests read by their le labels.
func TestLatencyBuckets(t *testing.T) {
	m := NewMetrics(nil)
	m.Latency.Observe(3e-4)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sidecar_latency_seconds" {
			continue
		}
		var les []float64
		for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
			les = append(les, b.GetUpperBound())
			want := uint64(0)
			if b.GetUpperBound() >= 3e-4 {
				want = 1
			}
			if b.GetCumulativeCount() != want {
				t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
			}
		}
		if !slices.Equal(les, latencyBuckets) {
			t.Errorf("buckets %v, want %v", les, latencyBuckets)
		}
		return
	}
	t.Fatal("no sidecar_latency_seconds")
}
