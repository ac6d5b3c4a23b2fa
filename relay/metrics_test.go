package relay

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// gatherSnapshot gathers the relay's metric families for the snapshot m.
func gatherSnapshot(t *testing.T, m Metrics) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector(func() Metrics { return m }))
	return reg
}

// metricsText is the Prometheus text exposition of the snapshot m.
func metricsText(t *testing.T, m Metrics) string {
	t.Helper()
	mfs, err := gatherSnapshot(t, m).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// relayMetricNames are the metrics of a moq-relay process, as the
// hand-written exposition had them (name{labels}, type, help):
// dashboards read these names.
var relayMetricNames = []string{
	"moq_relay_announce_refused_total{reason=invalid} counter ANNOUNCEs refused, by reason.",
	"moq_relay_announce_refused_total{reason=not_relay} counter ANNOUNCEs refused, by reason.",
	"moq_relay_announce_refused_total{reason=owned} counter ANNOUNCEs refused, by reason.",
	"moq_relay_announce_refused_total{reason=reserved} counter ANNOUNCEs refused, by reason.",
	"moq_relay_announce_refused_total{reason=unauthenticated} counter ANNOUNCEs refused, by reason.",
	"moq_relay_announce_takeovers_total counter Namespaces re-announced by the same identity from a new session.",
	"moq_relay_announcements gauge Announced namespaces.",
	"moq_relay_bytes_in_total counter Payload bytes received from publishers.",
	"moq_relay_bytes_out_total counter Payload bytes written to subscribers.",
	"moq_relay_dropped_total{reason=bad_framing} counter Objects or streams dropped, by reason.",
	"moq_relay_dropped_total{reason=datagram} counter Objects or streams dropped, by reason.",
	"moq_relay_dropped_total{reason=oversize} counter Objects or streams dropped, by reason.",
	"moq_relay_dropped_total{reason=queue_bytes} counter Objects or streams dropped, by reason.",
	"moq_relay_dropped_total{reason=queue_full} counter Objects or streams dropped, by reason.",
	"moq_relay_objects_in_total counter Objects received from publishers.",
	"moq_relay_objects_out_total counter Objects written to subscribers (one per subscriber).",
	"moq_relay_queued_bytes gauge Payload bytes held in downstream subscriber queues.",
	"moq_relay_quic_packets_dropped_total counter QUIC packets received and discarded before processing, mostly for a full receive queue (relay short of CPU).",
	"moq_relay_quic_packets_lost_total counter QUIC packets the relay sent that were lost and sent again (RFC 9002 section 6.1).",
	"moq_relay_sessions gauge Connected MoQ sessions.",
	"moq_relay_sessions_accepted_total counter MoQ sessions accepted since start.",
	"moq_relay_stream_credit_waits_total counter Times opening a stream waited for peer stream credit.",
	"moq_relay_streams_in_total counter Incoming data streams.",
	"moq_relay_subscribe_refused_total{reason=unauthenticated} counter SUBSCRIBEs refused, by reason.",
	"moq_relay_subscriber_disconnects_total counter Subscribers ended for being too slow or failing.",
	"moq_relay_subscriber_queue_peak_bytes gauge Most payload bytes one subscriber queue held since start (bounded by -queue-bytes).",
	"moq_relay_subscribers gauge Downstream subscriptions.",
	"moq_relay_tracks gauge Upstream subscriptions (one per namespace and track).",
	"moq_relay_upstream_announce_failures_total counter ANNOUNCEs forwarded upstream that were refused or not answered.",
	"moq_relay_upstream_connects_total counter Upstream relay sessions established (including reconnections).",
	"moq_relay_upstream_failures_total counter Upstream SUBSCRIBEs refused or timed out.",
	"moq_relay_upstreams gauge Connected upstream relay sessions.",
}

func TestMetricNames(t *testing.T) {
	mfs, err := gatherSnapshot(t, Metrics{}).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += fmt.Sprintf("{%s=%s}", l.GetName(), l.GetValue())
			}
			got = append(got, fmt.Sprintf("%s %s %s", name, strings.ToLower(mf.GetType().String()), mf.GetHelp()))
		}
	}
	if !slices.Equal(got, relayMetricNames) {
		t.Errorf("metrics:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(relayMetricNames, "\n"))
	}
}

// TestMetricValues: each snapshot field lands in its own sample.
func TestMetricValues(t *testing.T) {
	text := metricsText(t, Metrics{Sessions: 1, SessionsTotal: 2, Announcements: 3, Tracks: 4, Subscribers: 5,
		ObjectsIn: 6, BytesIn: 7, ObjectsOut: 8, BytesOut: 9, DroppedQueueFull: 10, DroppedOversize: 11,
		DroppedFraming: 12, Disconnects: 13, UpstreamFailures: 14, StreamsIn: 15, DatagramsDropped: 16,
		StreamCreditWait: 17, AnnounceRefusedUnauthenticated: 18, AnnounceRefusedReserved: 19,
		AnnounceRefusedOwned: 20, AnnounceRefusedInvalid: 21, SubscribeRefusedUnauthenticated: 22, AnnounceTakeovers: 23,
		DroppedQueueBytes: 24, QueuedBytes: 25, PeakQueuedBytes: 26,
		AnnounceRefusedNotRelay: 27, Upstreams: 28, UpstreamConnects: 29, UpstreamAnnounceFailures: 30,
		QUICPacketsLost: 31, QUICPacketsDropped: 32})
	for _, want := range []string{
		"moq_relay_sessions 1\n", "moq_relay_sessions_accepted_total 2\n", "moq_relay_announcements 3\n",
		"moq_relay_tracks 4\n", "moq_relay_subscribers 5\n", "moq_relay_objects_in_total 6\n",
		"moq_relay_bytes_in_total 7\n", "moq_relay_objects_out_total 8\n", "moq_relay_bytes_out_total 9\n",
		`moq_relay_dropped_total{reason="queue_full"} 10` + "\n", `moq_relay_dropped_total{reason="oversize"} 11` + "\n",
		`moq_relay_dropped_total{reason="bad_framing"} 12` + "\n", "moq_relay_subscriber_disconnects_total 13\n",
		"moq_relay_upstream_failures_total 14\n", "moq_relay_streams_in_total 15\n",
		`moq_relay_dropped_total{reason="datagram"} 16` + "\n", "moq_relay_stream_credit_waits_total 17\n",
		`moq_relay_announce_refused_total{reason="unauthenticated"} 18` + "\n",
		`moq_relay_announce_refused_total{reason="reserved"} 19` + "\n",
		`moq_relay_announce_refused_total{reason="owned"} 20` + "\n",
		`moq_relay_announce_refused_total{reason="invalid"} 21` + "\n",
		`moq_relay_subscribe_refused_total{reason="unauthenticated"} 22` + "\n",
		"moq_relay_announce_takeovers_total 23\n",
		`moq_relay_dropped_total{reason="queue_bytes"} 24` + "\n", "moq_relay_queued_bytes 25\n",
		"moq_relay_subscriber_queue_peak_bytes 26\n",
		`moq_relay_announce_refused_total{reason="not_relay"} 27` + "\n", "moq_relay_upstreams 28\n",
		"moq_relay_upstream_connects_total 29\n", "moq_relay_upstream_announce_failures_total 30\n",
		"moq_relay_quic_packets_lost_total 31\n", "moq_relay_quic_packets_dropped_total 32\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
}
