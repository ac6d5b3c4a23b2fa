package sidecar

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moqsframe/moqsframe/group"
	"github.com/moqsframe/moqsframe/rtpingest"
)

// latencyBuckets are upper bounds in seconds from 10 µs to 10 s.
var latencyBuckets = []float64{1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Metrics are the sidecar's counters, exported at /metrics. One Metrics
// may be shared by several Sidecars (Config.Metrics): they then count
// together. Metrics is a prometheus.Collector.
type Metrics struct {
	ObjectsIn, BytesIn, ObjectsOut, BytesOut prometheus.Counter
	Drops, AuthFailures, Errors, SinkErrors  prometheus.Counter
	// Lost (decrypt) counts objects that never arrived, from the gaps in
	// each sender's SFrame counters; Duplicates counts objects received
	// again (a publisher's reconnect replay) or too late, dropped.
	Lost, Duplicates prometheus.Counter
	Latency          prometheus.Histogram
}

// NewMetrics returns the sidecar metrics, registered with reg unless reg is
// nil. It panics if reg already holds metrics of the same names.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &Metrics{
		ObjectsIn:    counter("sidecar_objects_in_total", "Objects received for processing."),
		BytesIn:      counter("sidecar_bytes_in_total", "Payload bytes received for processing."),
		ObjectsOut:   counter("sidecar_objects_out_total", "Objects sealed or opened and written to the sink."),
		BytesOut:     counter("sidecar_bytes_out_total", "Payload bytes written to the sink."),
		Drops:        counter("sidecar_drops_total", "Objects dropped: oversized, queue closed, or malformed."),
		AuthFailures: counter("sidecar_auth_failures_total", "Objects that failed SFrame authentication."),
		Errors:       counter("sidecar_errors_total", "Objects that failed to seal or open for any reason."),
		SinkErrors:   counter("sidecar_sink_errors_total", "Objects the sink refused."),
		Lost:         counter("sidecar_objects_lost_total", "Objects that never arrived: gaps in a sender's SFrame counter sequence (decrypt)."),
		Duplicates:   counter("sidecar_duplicates_total", "Objects received again or too late, dropped (decrypt)."),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sidecar_latency_seconds",
			Help: "Time from receiving an object to writing it to the sink.", Buckets: latencyBuckets}),
	}
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

func (m *Metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.ObjectsIn, m.BytesIn, m.ObjectsOut, m.BytesOut,
		m.Drops, m.AuthFailures, m.Errors, m.SinkErrors, m.Lost, m.Duplicates, m.Latency}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { collectorList(m.all()).Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) { collectorList(m.all()).Collect(ch) }

// collectorList is one Collector made of several.
type collectorList []prometheus.Collector

func (l collectorList) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range l {
		c.Describe(ch)
	}
}

func (l collectorList) Collect(ch chan<- prometheus.Metric) {
	for _, c := range l {
		c.Collect(ch)
	}
}

// Collector returns the relay client's metrics, read at scrape time:
// sidecar_relay_connected, sidecar_relay_subscribers,
// sidecar_relay_reconnects_total, sidecar_objects_unpublished_total and
// sidecar_relay_dropped_total.
func (c *RelayClient) Collector() prometheus.Collector {
	return relayCollector(func() float64 { return b2f(c.Connected()) },
		func() float64 { return float64(c.Subscribers()) },
		func() float64 { return float64(c.Reconnects.Load()) },
		func() float64 { return float64(c.Unpublished.Load()) },
		func() float64 { return float64(c.pubs.dropped()) })
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func relayCollector(connected, subscribers, reconnects, unpublished, dropped func() float64) prometheus.Collector {
	return collectorList{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sidecar_relay_connected",
			Help: "1 while a MoQ session to the relay is up."}, connected),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sidecar_relay_subscribers",
			Help: "Subscribers the relay holds on this sidecar's published tracks."}, subscribers),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sidecar_relay_reconnects_total",
			Help: "Times the relay session was lost and re-established."}, reconnects),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sidecar_objects_unpublished_total",
			Help: "Sealed objects that never reached the relay: evicted from the reconnect buffer during an outage (encrypt)."}, unpublished),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sidecar_relay_dropped_total",
			Help: "Objects dropped for a relay subscription too slow to keep up (its queue stayed full)."}, dropped),
	}
}

// LossCollector returns a decrypting sidecar's gauge
// sidecar_objects_missing: objects missing from their senders' sequences
// but still inside the replay window, which may yet arrive (they are
// counted in sidecar_objects_lost_total once they leave it).
func LossCollector(s *Sidecar) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sidecar_objects_missing",
		Help: "Objects missing from their senders' SFrame counter sequences, still within the replay window (decrypt)."},
		func() float64 { return float64(s.Missing()) })
}

// GroupCollector returns a security group member's metrics, read at scrape
// time: sidecar_group_members, sidecar_group_refusals_total,
// sidecar_group_silent_members, sidecar_group_removed_for_silence_total
// and sidecar_group_heartbeats_total.
func GroupCollector(m *group.Member) prometheus.Collector {
	return groupCollector(func() float64 { return float64(len(m.Roster())) }, func() group.Stats { return m.Stats() })
}

func groupCollector(members func() float64, stats func() group.Stats) prometheus.Collector {
	return collectorList{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sidecar_group_members",
			Help: "Members in the verified roster of the security group's current epoch."}, members),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sidecar_group_refusals_total",
			Help: "Credentials this member refused (KeyPackages, Welcomes, commits)."}, func() float64 { return float64(stats().Refused) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sidecar_group_silent_members",
			Help: "Members the CS has not heard from for longer than the liveness timeout."}, func() float64 { return float64(stats().SilentMembers) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sidecar_group_removed_for_silence_total",
			Help: "Silent members this member's commits removed."}, func() float64 { return float64(stats().RemovedForSilence) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sidecar_group_heartbeats_total",
			Help: "Liveness heartbeats this member sent to the CS."}, func() float64 { return float64(stats().HeartbeatsSent) }),
	}
}

// rtpCollector returns an RTP input's counters, read at scrape time:
// sidecar_rtp_<track>_packets_total (every datagram read), the outcome of
// each (sidecar_rtp_<track>_datagrams_total{outcome}, which with
// sidecar_rtp_<track>_buffered add up to packets_total), and the loss and
// frame counters.
func rtpCollector(track string, stats func() (rtpingest.Stats, uint64)) prometheus.Collector {
	prefix := "sidecar_rtp_" + track + "_"
	counter := func(name, help string, v func(rtpingest.Stats, uint64) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: prefix + name, Help: help},
			func() float64 { return float64(v(stats())) })
	}
	return collectorList{
		counter("packets_total", "Datagrams read from the RTP port.",
			func(s rtpingest.Stats, other uint64) uint64 { return s.Packets + other }),
		rtpOutcomes{desc: prometheus.NewDesc(prefix+"datagrams_total",
			"Datagrams by outcome: delivered (in a frame), discarded (in a dropped frame), late, duplicate, empty (padding, DTX), rtcp, malformed, foreign_ssrc, other_sender.",
			[]string{"outcome"}, nil), stats: stats},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: prefix + "buffered", Help: "Datagrams held for reordering or an incomplete frame."},
			func() float64 { s, _ := stats(); return float64(s.Buffered) }),
		counter("lost_total", "RTP packets missing by sequence number.", func(s rtpingest.Stats, _ uint64) uint64 { return s.Lost }),
		counter("frames_total", "Frames delivered.", func(s rtpingest.Stats, _ uint64) uint64 { return s.Frames }),
		counter("frames_dropped_total", "Frames dropped: damaged by loss, malformed, or before the source's first keyframe.",
			func(s rtpingest.Stats, _ uint64) uint64 { return s.Dropped }),
		counter("source_changes_total", "New RTP sources (SSRC) adopted, or sequence restarts.",
			func(s rtpingest.Stats, _ uint64) uint64 { return s.SourceChanges }),
	}
}

// rtpOutcomes exposes the per-datagram outcome counters as one labelled
// counter, read at scrape time.
type rtpOutcomes struct {
	desc  *prometheus.Desc
	stats func() (rtpingest.Stats, uint64)
}

func (o rtpOutcomes) Describe(ch chan<- *prometheus.Desc) { ch <- o.desc }

func (o rtpOutcomes) Collect(ch chan<- prometheus.Metric) {
	s, other := o.stats()
	for _, v := range []struct {
		outcome string
		n       uint64
	}{
		{"delivered", s.Delivered}, {"discarded", s.Discarded}, {"late", s.Late}, {"duplicate", s.Duplicate},
		{"empty", s.Empty}, {"rtcp", s.RTCP}, {"malformed", s.Malformed}, {"foreign_ssrc", s.Foreign}, {"other_sender", other},
	} {
		ch <- prometheus.MustNewConstMetric(o.desc, prometheus.CounterValue, float64(v.n), v.outcome)
	}
}
