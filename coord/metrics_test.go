package coord

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moqsframe/moqsframe/identity"
)

// csMetrics are the metrics of a sframe-cs process, as the hand-written
// exposition had them (name, type, help): dashboards read these names.
var csMetrics = []string{
	"sframe_cs_commit_conflicts_total counter Commits rejected with 409 (stale epoch).",
	"sframe_cs_commits_accepted_total counter Commits accepted (epoch incremented).",
	"sframe_cs_forward_errors_total counter Forwarder failures (items stay queued).",
	"sframe_cs_forwarded_total counter Objects handed to the Forwarder.",
	"sframe_cs_groups_created_total counter Groups created by a first join request (201).",
	"sframe_cs_groups_retired_total counter Groups retired (state and archive removed; the next join creates them afresh), by reason: last_member (its last member left), silent (no member heard for the liveness timeout).",
	"sframe_cs_heartbeats_total counter Member heartbeats recorded.",
	"sframe_cs_http_responses_total counter HTTP responses by endpoint and status code.",
	"sframe_cs_refused_total counter Requests refused by authentication, authorization or limits, by reason.",
	"sframe_cs_requests_queued_total counter Join/leave requests accepted for the RequestTrack.",
}

// csRefusalReasons are the reason labels of sframe_cs_refused_total, each
// shown from the start.
var csRefusalReasons = []string{
	"ack_identity_mismatch", "commit_processed", "group_joins_full", "join_pending", "keypackage_credential_invalid",
	"keypackage_identity_mismatch", "not_admitted", "rate_limited",
	"tls_certificate_expired", "tls_certificate_invalid", "tls_certificate_key_usage",
	"tls_certificate_untrusted", "tls_no_certificate", "too_early", "unauthenticated",
}

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	m.response("join", 201)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got, reasons []string
	for _, mf := range mfs {
		got = append(got, fmt.Sprintf("%s %s %s", mf.GetName(), strings.ToLower(mf.GetType().String()), mf.GetHelp()))
		for _, x := range mf.GetMetric() {
			var labels []string
			for _, l := range x.GetLabel() {
				labels = append(labels, l.GetName())
				if mf.GetName() == "sframe_cs_refused_total" {
					reasons = append(reasons, l.GetValue())
				}
			}
			want := map[string]string{"sframe_cs_http_responses_total": "code,endpoint", "sframe_cs_refused_total": "reason",
				"sframe_cs_groups_retired_total": "reason"}[mf.GetName()]
			if strings.Join(labels, ",") != want {
				t.Errorf("%s labels %v, want %s", mf.GetName(), labels, want)
			}
		}
	}
	if !slices.Equal(got, csMetrics) {
		t.Errorf("metrics:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(csMetrics, "\n"))
	}
	if !slices.Equal(reasons, csRefusalReasons) {
		t.Errorf("refusal reasons %v, want %v", reasons, csRefusalReasons)
	}
}

func TestMetricsRefused(t *testing.T) {
	m := NewMetrics(nil)
	m.HandshakeRefused(identity.ErrExpired)
	m.HandshakeRefused(fmt.Errorf("x: %w", identity.ErrNoPeerCertificate))
	m.HandshakeRefused(errors.New("other"))
	m.refused(ReasonRateLimited)
	m.refused(ReasonRateLimited)
	m.refused("new_reason")
	for reason, want := range map[string]uint64{ReasonTLSExpired: 1, ReasonTLSNone: 1, ReasonTLSInvalid: 1,
		ReasonRateLimited: 2, ReasonNotAdmitted: 0, "new_reason": 1, "never": 0} {
		if got := m.Refused(reason); got != want {
			t.Errorf("Refused(%s) = %d, want %d", reason, got, want)
		}
	}
	if text := metricsText(t, m); !strings.Contains(text, `sframe_cs_refused_total{reason="new_reason"} 1`) ||
		strings.Contains(text, `reason="never"`) {
		t.Errorf("metrics:\n%s", text)
	}
}
