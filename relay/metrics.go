package relay

import (
	"fmt"
	"io"
	"net/http"
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
	DroppedQueueFull uint64 // object copies dropped for a full subscriber queue
	DroppedOversize  uint64 // incoming streams stopped for an object above the size limit
	DroppedFraming   uint64 // incoming streams stopped for bad framing / extension headers
	Disconnects      uint64 // subscribers ended as too slow or failing
	UpstreamFailures uint64 // upstream SUBSCRIBEs refused or timed out
	StreamsIn        uint64
	DatagramsDropped uint64
	StreamCreditWait uint64

	// Refused ANNOUNCEs by reason (see the Reason constants) and SUBSCRIBEs
	// refused for lack of a client certificate.
	AnnounceRefusedUnauthenticated  uint64
	AnnounceRefusedReserved         uint64
	AnnounceRefusedOwned            uint64
	AnnounceRefusedInvalid          uint64
	SubscribeRefusedUnauthenticated uint64
	// AnnounceTakeovers counts namespaces re-announced by the same identity
	// from a new session while the old one was still there.
	AnnounceTakeovers uint64
}

// Metrics returns a consistent snapshot.
func (r *Relay) Metrics() Metrics {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := Metrics{
		Sessions:         len(r.sessions),
		SessionsTotal:    r.sessionsTotal.Load(),
		Announcements:    len(r.announcements),
		Tracks:           len(r.tracks),
		ObjectsIn:        r.objsIn.Load(),
		BytesIn:          r.bytesIn.Load(),
		ObjectsOut:       r.retired.objectsOut.Load(),
		BytesOut:         r.retired.bytesOut.Load(),
		DroppedQueueFull: r.retired.droppedQueueFull.Load(),
		DroppedOversize:  r.retired.oversize.Load() + r.upstreamOversizeWhileForwarding.Load(),
		DroppedFraming:   r.retired.refused.Load(),
		Disconnects:      r.retired.disconnects.Load(),
		UpstreamFailures: r.upstreamFailures.Load(),
		StreamsIn:        r.retired.streams.Load(),
		DatagramsDropped: r.retired.datagrams.Load(),
		StreamCreditWait: r.retired.creditWaits.Load(),

		AnnounceRefusedUnauthenticated:  r.auth.announceUnauthenticated.Load(),
		AnnounceRefusedReserved:         r.auth.announceReserved.Load(),
		AnnounceRefusedOwned:            r.auth.announceOwned.Load(),
		AnnounceRefusedInvalid:          r.auth.announceInvalid.Load(),
		SubscribeRefusedUnauthenticated: r.auth.subscribeUnauthenticated.Load(),
		AnnounceTakeovers:               r.auth.takeovers.Load(),
	}
	for _, t := range r.tracks {
		st := t.pub.Stats()
		m.Subscribers += st.Subscribers
		m.ObjectsOut += st.ObjectsOut
		m.BytesOut += st.BytesOut
		m.DroppedQueueFull += st.Dropped
		m.Disconnects += st.Disconnected
	}
	for s := range r.sessions {
		st := s.Stats()
		m.DroppedOversize += st.Oversize
		m.DroppedFraming += st.StreamsRefused
		m.StreamsIn += st.StreamsAccepted
		m.DatagramsDropped += st.DatagramsDiscarded
		m.StreamCreditWait += st.StreamCreditWaits
	}
	return m
}

// WritePrometheus writes the metrics in the Prometheus text exposition
// format (version 0.0.4).
func (m Metrics) WritePrometheus(w io.Writer) error {
	type metric struct {
		name, typ, help, labels string
		value                   uint64
	}
	ms := []metric{
		{"moq_relay_sessions", "gauge", "Connected MoQ sessions.", "", uint64(m.Sessions)},
		{"moq_relay_sessions_accepted_total", "counter", "MoQ sessions accepted since start.", "", m.SessionsTotal},
		{"moq_relay_announcements", "gauge", "Announced namespaces.", "", uint64(m.Announcements)},
		{"moq_relay_tracks", "gauge", "Upstream subscriptions (one per namespace and track).", "", uint64(m.Tracks)},
		{"moq_relay_subscribers", "gauge", "Downstream subscriptions.", "", uint64(m.Subscribers)},
		{"moq_relay_objects_in_total", "counter", "Objects received from publishers.", "", m.ObjectsIn},
		{"moq_relay_bytes_in_total", "counter", "Payload bytes received from publishers.", "", m.BytesIn},
		{"moq_relay_objects_out_total", "counter", "Objects written to subscribers (one per subscriber).", "", m.ObjectsOut},
		{"moq_relay_bytes_out_total", "counter", "Payload bytes written to subscribers.", "", m.BytesOut},
		{"moq_relay_dropped_total", "counter", "Objects or streams dropped, by reason.", `reason="queue_full"`, m.DroppedQueueFull},
		{"moq_relay_dropped_total", "", "", `reason="oversize"`, m.DroppedOversize},
		{"moq_relay_dropped_total", "", "", `reason="bad_framing"`, m.DroppedFraming},
		{"moq_relay_dropped_total", "", "", `reason="datagram"`, m.DatagramsDropped},
		{"moq_relay_subscriber_disconnects_total", "counter", "Subscribers ended for being too slow or failing.", "", m.Disconnects},
		{"moq_relay_upstream_failures_total", "counter", "Upstream SUBSCRIBEs refused or timed out.", "", m.UpstreamFailures},
		{"moq_relay_streams_in_total", "counter", "Incoming data streams.", "", m.StreamsIn},
		{"moq_relay_stream_credit_waits_total", "counter", "Times opening a stream waited for peer stream credit.", "", m.StreamCreditWait},
		{"moq_relay_announce_refused_total", "counter", "ANNOUNCEs refused, by reason.", `reason="unauthenticated"`, m.AnnounceRefusedUnauthenticated},
		{"moq_relay_announce_refused_total", "", "", `reason="reserved"`, m.AnnounceRefusedReserved},
		{"moq_relay_announce_refused_total", "", "", `reason="owned"`, m.AnnounceRefusedOwned},
		{"moq_relay_announce_refused_total", "", "", `reason="invalid"`, m.AnnounceRefusedInvalid},
		{"moq_relay_subscribe_refused_total", "counter", "SUBSCRIBEs refused, by reason.", `reason="unauthenticated"`, m.SubscribeRefusedUnauthenticated},
		{"moq_relay_announce_takeovers_total", "counter", "Namespaces re-announced by the same identity from a new session.", "", m.AnnounceTakeovers},
	}
	for _, x := range ms {
		if x.typ != "" {
			if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", x.name, x.help, x.name, x.typ); err != nil {
				return err
			}
		}
		name := x.name
		if x.labels != "" {
			name += "{" + x.labels + "}"
		}
		if _, err := fmt.Fprintf(w, "%s %d\n", name, x.value); err != nil {
			return err
		}
	}
	return nil
}

// Handler serves /metrics (Prometheus text) and /healthz ("ok" while the
// relay accepts sessions).
func (r *Relay) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_ = r.Metrics().WritePrometheus(w)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if r.ctx.Err() != nil {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}
