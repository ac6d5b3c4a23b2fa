package relay

import (
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is a snapshot of the relay's counters and gauges.
type Metrics struct {
	Sessions         int    // connected sessions
	SessionsTotal    uint64 // sessions accepted since start
	Announcements    int
	Tracks           int // upstream subscriptions
	Subscribers      int // downstream subscriptions
	ObjectsIn        uint64
	BytesIn          uint64
	ObjectsOut       uint64 // summed over downstream subscribers
	BytesOut         uint64
	DroppedQueueFull uint64 // object copies dropped for a subscriber queue at its object bound
	// DroppedQueueBytes: object copies dropped because the subscriber's
	// queue would have gone above SubscriberQueueBytes.
	DroppedQueueBytes uint64
	// QueuedBytes is the payload held in subscriber queues now;
	// PeakQueuedBytes the most one subscriber queue held since start.
	QueuedBytes      int64
	PeakQueuedBytes  int64
	DroppedOversize  uint64 // incoming streams stopped for an object above the size limit
	DroppedFraming   uint64 // incoming streams stopped for bad framing / extension headers
	Disconnects      uint64 // subscribers ended as too slow or failing
	UpstreamFailures uint64 // upstream SUBSCRIBEs refused or timed out
	StreamsIn        uint64
	DatagramsDropped uint64
	StreamCreditWait uint64
	// QUICPacketsLost and QUICPacketsDropped are the sessions' QUIC-level
	// losses, which QUIC repairs (see moq.SessionStats): packets the relay
	// sent that were lost, and received packets quic-go discarded, mostly
	// for a full receive queue when the relay is short of CPU.
	QUICPacketsLost    uint64
	QUICPacketsDropped uint64

	// Refused ANNOUNCEs by reason (see the Reason constants) and SUBSCRIBEs
	// refused for lack of a client certificate.
	AnnounceRefusedUnauthenticated  uint64
	AnnounceRefusedReserved         uint64
	AnnounceRefusedOwned            uint64
	AnnounceRefusedInvalid          uint64
	SubscribeRefusedUnauthenticated uint64
	AnnounceRefusedNotRelay         uint64
	// Upstreams is the number of connected upstream relay sessions;
	// UpstreamConnects counts their (re)connections;
	// UpstreamAnnounceFailures counts forwarded ANNOUNCEs an upstream
	// refused or did not answer.
	Upstreams                int
	UpstreamConnects         uint64
	UpstreamAnnounceFailures uint64
	// AnnounceTakeovers counts namespaces re-announced by the same identity
	// from a new session while the old one was still there.
	AnnounceTakeovers uint64
}

// Metrics returns a consistent snapshot.
func (r *Relay) Metrics() Metrics {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := Metrics{
		Sessions:           len(r.sessions),
		SessionsTotal:      r.sessionsTotal.Load(),
		Announcements:      len(r.announcements),
		Tracks:             len(r.tracks),
		ObjectsIn:          r.objsIn.Load(),
		BytesIn:            r.bytesIn.Load(),
		ObjectsOut:         r.retired.objectsOut.Load(),
		BytesOut:           r.retired.bytesOut.Load(),
		DroppedQueueFull:   r.retired.droppedQueueFull.Load(),
		DroppedQueueBytes:  r.retired.droppedQueueBytes.Load(),
		PeakQueuedBytes:    r.retired.peakQueuedBytes.Load(),
		DroppedOversize:    r.retired.oversize.Load() + r.upstreamOversizeWhileForwarding.Load(),
		DroppedFraming:     r.retired.refused.Load(),
		Disconnects:        r.retired.disconnects.Load(),
		UpstreamFailures:   r.upstreamFailures.Load(),
		StreamsIn:          r.retired.streams.Load(),
		DatagramsDropped:   r.retired.datagrams.Load(),
		StreamCreditWait:   r.retired.creditWaits.Load(),
		QUICPacketsLost:    r.retired.quicLost.Load(),
		QUICPacketsDropped: r.retired.quicDropped.Load(),

		AnnounceRefusedUnauthenticated:  r.auth.announceUnauthenticated.Load(),
		AnnounceRefusedReserved:         r.auth.announceReserved.Load(),
		AnnounceRefusedOwned:            r.auth.announceOwned.Load(),
		AnnounceRefusedInvalid:          r.auth.announceInvalid.Load(),
		SubscribeRefusedUnauthenticated: r.auth.subscribeUnauthenticated.Load(),
		AnnounceTakeovers:               r.auth.takeovers.Load(),
		AnnounceRefusedNotRelay:         r.auth.announceNotRelay.Load(),
		Upstreams:                       len(r.upstreamSess),
		UpstreamConnects:                r.upstreamConnects.Load(),
		UpstreamAnnounceFailures:        r.upstreamAnnounceFailures.Load(),
	}
	for _, t := range r.tracks {
		st := t.pub.Stats()
		m.Subscribers += st.Subscribers
		m.ObjectsOut += st.ObjectsOut
		m.BytesOut += st.BytesOut
		m.DroppedQueueFull += st.Dropped - st.DroppedBytes
		m.DroppedQueueBytes += st.DroppedBytes
		m.QueuedBytes += st.QueuedBytes
		m.PeakQueuedBytes = max(m.PeakQueuedBytes, st.PeakQueuedBytes)
		m.Disconnects += st.Disconnected
	}
	for s := range r.sessions {
		st := s.Stats()
		m.DroppedOversize += st.Oversize
		m.DroppedFraming += st.StreamsRefused
		m.StreamsIn += st.StreamsAccepted
		m.DatagramsDropped += st.DatagramsDiscarded
		m.StreamCreditWait += st.StreamCreditWaits
		m.QUICPacketsLost += st.PacketsLost
		m.QUICPacketsDropped += st.PacketsDropped
	}
	return m
}

// metricDesc is one metric family of the relay: its name, type and help
// text, and how to read its samples from a snapshot (one per reason for
// labelled families).
type metricDesc struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(m *Metrics) []labelled
}

type labelled struct {
	reason string // "" for unlabelled families
	v      uint64
}

func one(f func(m *Metrics) uint64) func(m *Metrics) []labelled {
	return func(m *Metrics) []labelled { return []labelled{{"", f(m)}} }
}

func newMetricDesc(name, help string, typ prometheus.ValueType, value func(m *Metrics) []labelled, byReason bool) metricDesc {
	var labels []string
	if byReason {
		labels = []string{"reason"}
	}
	return metricDesc{prometheus.NewDesc(name, help, labels, nil), typ, value}
}

var (
	gauge   = prometheus.GaugeValue
	counter = prometheus.CounterValue
)

// relayMetrics are the relay's metric families, in exposition order.
var relayMetrics = []metricDesc{
	newMetricDesc("moq_relay_sessions", "Connected MoQ sessions.", gauge, one(func(m *Metrics) uint64 { return uint64(m.Sessions) }), false),
	newMetricDesc("moq_relay_sessions_accepted_total", "MoQ sessions accepted since start.", counter, one(func(m *Metrics) uint64 { return m.SessionsTotal }), false),
	newMetricDesc("moq_relay_announcements", "Announced namespaces.", gauge, one(func(m *Metrics) uint64 { return uint64(m.Announcements) }), false),
	newMetricDesc("moq_relay_tracks", "Upstream subscriptions (one per namespace and track).", gauge, one(func(m *Metrics) uint64 { return uint64(m.Tracks) }), false),
	newMetricDesc("moq_relay_subscribers", "Downstream subscriptions.", gauge, one(func(m *Metrics) uint64 { return uint64(m.Subscribers) }), false),
	newMetricDesc("moq_relay_objects_in_total", "Objects received from publishers.", counter, one(func(m *Metrics) uint64 { return m.ObjectsIn }), false),
	newMetricDesc("moq_relay_bytes_in_total", "Payload bytes received from publishers.", counter, one(func(m *Metrics) uint64 { return m.BytesIn }), false),
	newMetricDesc("moq_relay_objects_out_total", "Objects written to subscribers (one per subscriber).", counter, one(func(m *Metrics) uint64 { return m.ObjectsOut }), false),
	newMetricDesc("moq_relay_bytes_out_total", "Payload bytes written to subscribers.", counter, one(func(m *Metrics) uint64 { return m.BytesOut }), false),
	newMetricDesc("moq_relay_dropped_total", "Objects or streams dropped, by reason.", counter, func(m *Metrics) []labelled {
		return []labelled{{"queue_full", m.DroppedQueueFull}, {"queue_bytes", m.DroppedQueueBytes}, {"oversize", m.DroppedOversize}, {"bad_framing", m.DroppedFraming}, {"datagram", m.DatagramsDropped}}
	}, true),
	newMetricDesc("moq_relay_queued_bytes", "Payload bytes held in downstream subscriber queues.", gauge, one(func(m *Metrics) uint64 { return uint64(max(m.QueuedBytes, 0)) }), false),
	newMetricDesc("moq_relay_subscriber_queue_peak_bytes", "Most payload bytes one subscriber queue held since start (bounded by -queue-bytes).", gauge, one(func(m *Metrics) uint64 { return uint64(max(m.PeakQueuedBytes, 0)) }), false),
	newMetricDesc("moq_relay_subscriber_disconnects_total", "Subscribers ended for being too slow or failing.", counter, one(func(m *Metrics) uint64 { return m.Disconnects }), false),
	newMetricDesc("moq_relay_upstream_failures_total", "Upstream SUBSCRIBEs refused or timed out.", counter, one(func(m *Metrics) uint64 { return m.UpstreamFailures }), false),
	newMetricDesc("moq_relay_streams_in_total", "Incoming data streams.", counter, one(func(m *Metrics) uint64 { return m.StreamsIn }), false),
	newMetricDesc("moq_relay_stream_credit_waits_total", "Times opening a stream waited for peer stream credit.", counter, one(func(m *Metrics) uint64 { return m.StreamCreditWait }), false),
	newMetricDesc("moq_relay_quic_packets_lost_total", "QUIC packets the relay sent that were lost and sent again (RFC 9002 section 6.1).", counter, one(func(m *Metrics) uint64 { return m.QUICPacketsLost }), false),
	newMetricDesc("moq_relay_quic_packets_dropped_total", "QUIC packets received and discarded before processing, mostly for a full receive queue (relay short of CPU).", counter, one(func(m *Metrics) uint64 { return m.QUICPacketsDropped }), false),
	newMetricDesc("moq_relay_announce_refused_total", "ANNOUNCEs refused, by reason.", counter, func(m *Metrics) []labelled {
		return []labelled{{ReasonUnauthenticated, m.AnnounceRefusedUnauthenticated}, {ReasonReserved, m.AnnounceRefusedReserved},
			{ReasonOwned, m.AnnounceRefusedOwned}, {ReasonInvalid, m.AnnounceRefusedInvalid},
			{ReasonNotRelay, m.AnnounceRefusedNotRelay}}
	}, true),
	newMetricDesc("moq_relay_subscribe_refused_total", "SUBSCRIBEs refused, by reason.", counter, func(m *Metrics) []labelled {
		return []labelled{{ReasonUnauthenticated, m.SubscribeRefusedUnauthenticated}}
	}, true),
	newMetricDesc("moq_relay_upstreams", "Connected upstream relay sessions.", gauge, one(func(m *Metrics) uint64 { return uint64(m.Upstreams) }), false),
	newMetricDesc("moq_relay_upstream_connects_total", "Upstream relay sessions established (including reconnections).", counter, one(func(m *Metrics) uint64 { return m.UpstreamConnects }), false),
	newMetricDesc("moq_relay_upstream_announce_failures_total", "ANNOUNCEs forwarded upstream that were refused or not answered.", counter, one(func(m *Metrics) uint64 { return m.UpstreamAnnounceFailures }), false),
	newMetricDesc("moq_relay_announce_takeovers_total", "Namespaces re-announced by the same identity from a new session.", counter, one(func(m *Metrics) uint64 { return m.AnnounceTakeovers }), false),
}

// collector exposes snapshots as the relay's metric families: one
// snapshot per scrape.
type collector func() Metrics

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range relayMetrics {
		ch <- d.desc
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c()
	for _, d := range relayMetrics {
		for _, l := range d.value(&m) {
			if l.reason == "" {
				ch <- prometheus.MustNewConstMetric(d.desc, d.typ, float64(l.v))
			} else {
				ch <- prometheus.MustNewConstMetric(d.desc, d.typ, float64(l.v), l.reason)
			}
		}
	}
}

// Collector returns the relay's metrics (moq_relay_*), read from a
// snapshot at each scrape, to register with a prometheus.Registerer.
func (r *Relay) Collector() prometheus.Collector { return collector(r.Metrics) }

// Handler serves /metrics (the metrics g gathers, which should include
// the relay's Collector) and /healthz ("ok" while the relay accepts
// sessions).
func (r *Relay) Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if r.ctx.Err() != nil {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}
