// Package wish holds what WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep)
// endpoints share: the HTTP session resources (POST an offer, PATCH trickle
// ICE, DELETE), bearer tokens, the session limit, typed refusals with
// counters, and the pion API both use.
//
// Adversary: anyone who can reach the HTTP port. Every request is bounded
// (body size, session count), parsed before pion sees it, and refused with
// a 4xx naming the reason; refusals are counted by reason and never touch
// other sessions.
package wish

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Refusal reasons; each is an error (errors.Is) and a counter label.
var (
	ErrUnauthorized    = errors.New("missing or wrong bearer token")
	ErrContentType     = errors.New("wrong content type")
	ErrMalformedOffer  = errors.New("malformed SDP offer")
	ErrNoCodec         = errors.New("no supported codec in the offer")
	ErrTooManySessions = errors.New("too many sessions")
	ErrStreamBusy      = errors.New("stream already published")
	ErrNoSession       = errors.New("no such session")
	ErrBadPatch        = errors.New("bad trickle ICE fragment")
	ErrTooLarge        = errors.New("request body too large")
	ErrNegotiation     = errors.New("WebRTC negotiation failed")
	ErrBadStream       = errors.New("bad stream name")
)

// RequestError is a refusal: the HTTP status, the reason (one of the Err
// values above) and a detail for the client.
type RequestError struct {
	Status int
	Reason error
	Detail string
}

func (e *RequestError) Error() string {
	if e.Detail == "" {
		return e.Reason.Error()
	}
	return e.Reason.Error() + ": " + e.Detail
}

func (e *RequestError) Unwrap() error { return e.Reason }

// Refuse returns a RequestError.
func Refuse(status int, reason error, format string, args ...any) *RequestError {
	return &RequestError{Status: status, Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// reasonLabel is the counter label of a refusal reason.
func reasonLabel(err error) string {
	for _, r := range []struct {
		err   error
		label string
	}{
		{ErrUnauthorized, "unauthorized"}, {ErrContentType, "content_type"}, {ErrMalformedOffer, "malformed_offer"},
		{ErrNoCodec, "no_codec"}, {ErrTooManySessions, "too_many_sessions"}, {ErrStreamBusy, "stream_busy"},
		{ErrNoSession, "no_session"}, {ErrBadPatch, "bad_patch"}, {ErrTooLarge, "too_large"}, {ErrNegotiation, "negotiation"}, {ErrBadStream, "bad_stream"},
	} {
		if errors.Is(err, r.err) {
			return r.label
		}
	}
	return "other"
}

// Session is one WebRTC session behind a resource URL.
type Session interface {
	// AddCandidates adds the remote candidates of a trickle ICE PATCH.
	AddCandidates(f *SDPFrag) error
	// Close ends the session (DELETE, shutdown, or a limit).
	Close() error
}

// Protocol is the role-specific half of an Endpoint: WHIP or WHEP.
type Protocol interface {
	// Offer answers an SDP offer (already checked by ParseOffer) for stream (the URL path below the
	// endpoint, "" for the endpoint itself), creating a session. done must
	// be called once when the session ends by itself (ICE failure).
	// Errors should be *RequestError.
	Offer(stream, offer string, done func()) (answer string, s Session, err error)
}

// Config configures an Endpoint.
type Config struct {
	Name        string // "whip" or "whep": the path, the metric prefix and the log name
	Token       string // bearer token; empty: none required
	MaxSessions int    // concurrent sessions; <= 0: 16
	Logger      *slog.Logger
}

// MaxBody bounds request bodies: SDP offers of real browsers are a few KB.
const MaxBody = 64 << 10

// Endpoint serves the HTTP resources of one protocol at /NAME and
// /NAME/STREAM (POST), /NAME/session/ID (PATCH, DELETE).
type Endpoint struct {
	cfg   Config
	proto Protocol
	token [32]byte
	log   *slog.Logger

	mu       sync.Mutex
	sessions map[string]Session
	closed   bool

	Refused  *prometheus.CounterVec // by reason
	Sessions prometheus.Gauge
	Started  prometheus.Counter
}

// NewEndpoint returns the endpoint of proto.
func NewEndpoint(cfg Config, proto Protocol) *Endpoint {
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Endpoint{cfg: cfg, proto: proto, log: cfg.Logger.With("endpoint", cfg.Name), sessions: map[string]Session{},
		token: sha256.Sum256([]byte(cfg.Token)),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sidecar_" + cfg.Name + "_refused_total",
			Help: "Requests refused, by reason."}, []string{"reason"}),
		Sessions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sidecar_" + cfg.Name + "_sessions",
			Help: "WebRTC sessions open now."}),
		Started: prometheus.NewCounter(prometheus.CounterOpts{Name: "sidecar_" + cfg.Name + "_sessions_total",
			Help: "WebRTC sessions created."}),
	}
	return e
}

// Collectors are the endpoint's metrics: sidecar_NAME_refused_total{reason},
// sidecar_NAME_sessions and sidecar_NAME_sessions_total.
func (e *Endpoint) Collectors() []prometheus.Collector {
	return []prometheus.Collector{e.Refused, e.Sessions, e.Started}
}

// Collector is several collectors as one.
type Collector []prometheus.Collector

// Describe implements prometheus.Collector.
func (l Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range l {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (l Collector) Collect(ch chan<- prometheus.Metric) {
	for _, c := range l {
		c.Collect(ch)
	}
}

// Path is the endpoint's URL path: "/whip" or "/whep".
func (e *Endpoint) Path() string { return "/" + e.cfg.Name }

// Register adds the endpoint's handlers to mux.
func (e *Endpoint) Register(mux *http.ServeMux) {
	mux.Handle(e.Path(), e)
	mux.Handle(e.Path()+"/", e)
}

// ServeHTTP implements http.Handler.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cors(w)
	if r.Method == http.MethodOptions {
		w.Header().Set("Accept-Post", "application/sdp")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, e.Path()), "/")
	var err error
	switch {
	case !e.authorized(r):
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+e.cfg.Name+`"`)
		err = Refuse(http.StatusUnauthorized, ErrUnauthorized, "send Authorization: Bearer <token>")
	case strings.HasPrefix(rest, "session/"):
		id := strings.TrimPrefix(rest, "session/")
		switch r.Method {
		case http.MethodDelete:
			err = e.delete(id)
			if err == nil {
				w.WriteHeader(http.StatusOK)
			}
		case http.MethodPatch:
			err = e.patch(w, r, id)
		default:
			w.Header().Set("Allow", "PATCH, DELETE, OPTIONS")
			http.Error(w, "session resources take PATCH and DELETE", http.StatusMethodNotAllowed)
			return
		}
	case r.Method == http.MethodPost:
		err = e.post(w, r, rest)
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		http.Error(w, e.cfg.Name+": POST an SDP offer (Content-Type: application/sdp)", http.StatusMethodNotAllowed)
		return
	}
	if err != nil {
		var re *RequestError
		if !errors.As(err, &re) {
			re = Refuse(http.StatusBadRequest, ErrNegotiation, "%v", err)
		}
		e.Refused.WithLabelValues(reasonLabel(re.Reason)).Inc()
		e.log.Info("request refused", "method", r.Method, "path", r.URL.Path, "status", re.Status, "err", re)
		http.Error(w, e.cfg.Name+": "+re.Error(), re.Status)
	}
}

func cors(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "POST, PATCH, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	h.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Post")
}

// authorized compares the bearer token in constant time.
func (e *Endpoint) authorized(r *http.Request) bool {
	if e.cfg.Token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
	return subtle.ConstantTimeCompare(sum[:], e.token[:]) == 1 && ok
}

func readBody(r *http.Request, contentType string) (string, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != contentType {
		return "", Refuse(http.StatusUnsupportedMediaType, ErrContentType, "want Content-Type: %s", contentType)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return "", Refuse(http.StatusBadRequest, ErrMalformedOffer, "reading the body: %v", err)
	}
	if len(b) > MaxBody {
		return "", Refuse(http.StatusRequestEntityTooLarge, ErrTooLarge, "more than %d bytes", MaxBody)
	}
	return string(b), nil
}

func (e *Endpoint) post(w http.ResponseWriter, r *http.Request, stream string) error {
	offer, err := readBody(r, "application/sdp")
	if err != nil {
		return err
	}
	// Parsed first, so that a bad offer is told so even when the endpoint is full.
	if _, err := ParseOffer(offer); err != nil {
		return err
	}
	id := newID()
	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return Refuse(http.StatusServiceUnavailable, ErrTooManySessions, "shutting down")
	case len(e.sessions) >= e.cfg.MaxSessions:
		e.mu.Unlock()
		w.Header().Set("Retry-After", "5")
		return Refuse(http.StatusTooManyRequests, ErrTooManySessions, "limit %d reached; end a session (DELETE) or retry later", e.cfg.MaxSessions)
	}
	e.sessions[id] = nil // reserved while negotiating
	e.mu.Unlock()

	var once sync.Once
	done := func() { once.Do(func() { e.remove(id) }) }
	answer, s, err := e.proto.Offer(stream, offer, done)
	if err != nil {
		done()
		return err
	}
	e.mu.Lock()
	if _, ok := e.sessions[id]; !ok || e.closed { // ended while negotiating
		e.mu.Unlock()
		s.Close()
		return Refuse(http.StatusServiceUnavailable, ErrNegotiation, "session ended during negotiation")
	}
	e.sessions[id] = s
	e.mu.Unlock()
	e.Sessions.Inc()
	e.Started.Inc()
	e.log.Info("session started", "session", id, "stream", stream)

	loc := e.Path() + "/session/" + id
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", loc)
	w.Header().Set("ETag", `"`+id+`"`)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, answer)
	return nil
}

// remove forgets a session that ended by itself.
func (e *Endpoint) remove(id string) {
	e.mu.Lock()
	s, ok := e.sessions[id]
	delete(e.sessions, id)
	e.mu.Unlock()
	if ok && s != nil {
		e.Sessions.Dec()
		e.log.Info("session ended", "session", id)
	}
}

func (e *Endpoint) delete(id string) error {
	e.mu.Lock()
	s, ok := e.sessions[id]
	if ok && s != nil {
		delete(e.sessions, id)
	}
	e.mu.Unlock()
	if !ok || s == nil {
		return Refuse(http.StatusNotFound, ErrNoSession, "session %q", id)
	}
	e.Sessions.Dec()
	e.log.Info("session deleted", "session", id)
	return s.Close()
}

func (e *Endpoint) patch(w http.ResponseWriter, r *http.Request, id string) error {
	body, err := readBody(r, "application/trickle-ice-sdpfrag")
	if err != nil {
		return err
	}
	e.mu.Lock()
	s := e.sessions[id]
	e.mu.Unlock()
	if s == nil {
		return Refuse(http.StatusNotFound, ErrNoSession, "session %q", id)
	}
	f, err := ParseSDPFrag(body)
	if err != nil {
		return Refuse(http.StatusBadRequest, ErrBadPatch, "%v", err)
	}
	if err := s.AddCandidates(f); err != nil {
		var re *RequestError
		if errors.As(err, &re) {
			return re
		}
		return Refuse(http.StatusBadRequest, ErrBadPatch, "%v", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Close ends every session; later POSTs are refused.
func (e *Endpoint) Close() {
	e.mu.Lock()
	e.closed = true
	ss := e.sessions
	e.sessions = map[string]Session{}
	e.mu.Unlock()
	for _, s := range ss {
		if s != nil {
			s.Close()
			e.Sessions.Dec()
		}
	}
}

// Count returns the number of sessions open or negotiating.
func (e *Endpoint) Count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sessions)
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidStream reports whether a stream name (the URL path below the
// endpoint) is usable in a MoQ track name: empty, or 1 to 64 of
// [A-Za-z0-9._-].
func ValidStream(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
