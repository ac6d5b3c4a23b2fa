package coord

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/moqsframe/moqsframe/coord/store"
	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/identity"
)

// ErrUnknownGroup is matched (errors.Is) by the *StatusError of a 404
// answer: the group does not exist. It is store.ErrUnknownGroup.
var ErrUnknownGroup = store.ErrUnknownGroup

// ErrEpochConflict is matched (errors.Is) by *EpochConflictError, which
// Client.Commit returns on 409 Conflict.
var ErrEpochConflict = errors.New("coord: epoch conflict")

// EpochConflictError reports that the CS is at a different epoch than the
// commit. The committer must discard its pending commit, apply the commits
// on the CommitTrack up to Epoch, and build a new commit.
type EpochConflictError struct {
	Group       string
	CommitEpoch uint64 // epoch the rejected commit was made in
	Epoch       uint64 // the CS's current epoch for the group
}

func (e *EpochConflictError) Error() string {
	return fmt.Sprintf("coord: commit for epoch %d of group %q rejected: the group is at epoch %d; discard the commit, catch up on the CommitTrack and retry",
		e.CommitEpoch, e.Group, e.Epoch)
}

// Is makes errors.Is(err, ErrEpochConflict) true.
func (e *EpochConflictError) Is(target error) bool { return target == ErrEpochConflict }

// StatusError is any other non-success answer from the CS. errors.Is(err,
// X) holds for X = ErrUnknownGroup on 404, ErrUnauthenticated on 401,
// ErrForbidden on 403 and ErrTooManyRequests on 429.
type StatusError struct {
	Code    int
	Message string // the CS's error text
	// Reason is the refusal reason of a 401/403/429 (a Reason* constant),
	// "" otherwise.
	Reason string
	// RetryAfter is the CS's Retry-After (429), 0 if none.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("coord: CS answered %d %s (%s): %s", e.Code, http.StatusText(e.Code), e.Reason, e.Message)
	}
	return fmt.Sprintf("coord: CS answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

func (e *StatusError) Is(target error) bool {
	if target == nil {
		return false
	}
	return target == ErrUnknownGroup && e.Code == http.StatusNotFound || target == classOf(e.Code)
}

// Client talks to a coordination service on behalf of a group member.
type Client struct {
	base *url.URL
	hc   *http.Client
	// Retries is how many times a request is repeated, with the identical
	// body, after a transport error or a 500/502/503/504 answer. The CS
	// treats an identical commit for an already-decided epoch as success,
	// so retrying a commit is safe. Default 2.
	Retries int
	// Backoff is the pause before the first retry, doubled each time.
	Backoff time.Duration
}

// NewClient returns a Client for the CS at baseURL (e.g.
// "https://cs.example:8443"). hc nil means http.DefaultClient.
func NewClient(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("coord: CS URL %q must look like https://host:port", baseURL)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: u, hc: hc, Retries: 2, Backoff: 100 * time.Millisecond}, nil
}

type answer struct {
	code  int
	body  okBody
	err   errorBody
	epoch string
	// refusal fields (401/403/429)
	reason     string
	retryAfter time.Duration
}

// errorAnswer is errorBody and refusalBody in one: a refusal has "message"
// and its reason in "error".
type errorAnswer struct {
	errorBody
	Message string `json:"message"`
}

func (c *Client) do(ctx context.Context, method, group, suffix string, body []byte) (*answer, error) {
	if !wire.ValidGroupName(group) {
		return nil, fmt.Errorf("coord: invalid group name %q: use 1-255 characters from A-Z a-z 0-9 - . _ ~", group)
	}
	u := c.base.String() + "/v1/groups/" + group + "/" + suffix
	backoff := c.Backoff
	for attempt := 0; ; attempt++ {
		a, err := c.once(ctx, method, u, body)
		retryable := err != nil && ctx.Err() == nil
		if err == nil {
			switch a.code {
			case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				retryable = true
			}
		}
		if !retryable || attempt >= c.Retries {
			return a, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

func (c *Client) once(ctx context.Context, method, u string, body []byte) (*answer, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("coord: %s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("coord: reading answer of %s %s: %w", method, u, err)
	}
	a := &answer{code: resp.StatusCode, epoch: resp.Header.Get(EpochHeader)}
	if resp.StatusCode < 300 {
		_ = json.Unmarshal(raw, &a.body)
	} else {
		a.parseError(resp, raw)
	}
	return a, nil
}

func (a *answer) parseError(resp *http.Response, raw []byte) {
	var ea errorAnswer
	switch {
	case json.Unmarshal(raw, &ea) != nil || ea.Error == "":
		a.err.Error = strings.TrimSpace(string(raw))
	case ea.Message != "":
		a.err, a.reason = ea.errorBody, ea.Error
		a.err.Error = ea.Message
	default:
		a.err = ea.errorBody
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		a.retryAfter = time.Duration(s) * time.Second
	}
}

func (a *answer) statusErr() error {
	return &StatusError{Code: a.code, Message: a.err.Error, Reason: a.reason, RetryAfter: a.retryAfter}
}

func (c *Client) request(ctx context.Context, group string, t wire.RequestType, body []byte) (*answer, error) {
	r := wire.Request{GroupID: []byte(group), Type: t, Body: body}
	enc, err := r.Marshal()
	if err != nil {
		return nil, err
	}
	return c.do(ctx, http.MethodPost, group, "requests", enc)
}

// Join sends a join request with the member's KeyPackage. created is true
// when the group did not exist (201): the caller must now create a
// one-member MLS group at epoch 0. Otherwise (200, or 202 if the CS
// could not forward it yet and will retry) the request is on its way to the
// RequestTrack and the caller waits for a Welcome. A CS in authenticated
// mode answers *StatusError 403 (errors.Is ErrForbidden; Reason
// not_admitted, keypackage_credential_invalid, keypackage_identity_mismatch)
// or 429 (ErrTooManyRequests; rate_limited, join_pending, group_joins_full,
// with RetryAfter); the identical join retried while pending gets its
// original answer.
func (c *Client) Join(ctx context.Context, group string, keyPackage []byte) (created bool, err error) {
	a, err := c.request(ctx, group, wire.RequestJoin, keyPackage)
	if err != nil {
		return false, err
	}
	switch a.code {
	case http.StatusCreated:
		return true, nil
	case http.StatusOK, http.StatusAccepted:
		return false, nil
	default:
		return false, a.statusErr()
	}
}

// Leave sends a leave request carrying the member's Remove proposal for
// itself (an MLSMessage). A remaining member will commit it. Errors:
// *StatusError (404 ErrUnknownGroup; 401/403/429 in authenticated mode).
func (c *Client) Leave(ctx context.Context, group string, removeProposal []byte) error {
	a, err := c.request(ctx, group, wire.RequestLeave, removeProposal)
	if err != nil {
		return err
	}
	if a.code == http.StatusOK || a.code == http.StatusAccepted {
		return nil
	}
	return a.statusErr()
}

// Commit submits a Commit made in epoch (and the Welcome for any joiners,
// nil if none). nil means the CS accepted it: the caller may merge its
// pending commit. *EpochConflictError (errors.Is ErrEpochConflict) means
// another commit won the epoch. Other refusals are *StatusError (404
// ErrUnknownGroup; 401/403/429 in authenticated mode).
func (c *Client) Commit(ctx context.Context, group string, epoch uint64, commit, welcome []byte) error {
	cr := wire.CommitRequest{GroupID: []byte(group), Epoch: epoch, Commit: commit, Welcome: welcome}
	enc, err := cr.Marshal()
	if err != nil {
		return err
	}
	a, err := c.do(ctx, http.MethodPost, group, "commits", enc)
	if err != nil {
		return err
	}
	switch a.code {
	case http.StatusOK, http.StatusAccepted:
		return nil
	case http.StatusConflict:
		cur, perr := strconv.ParseUint(a.epoch, 10, 64)
		if perr != nil && a.err.Epoch != nil {
			cur, perr = *a.err.Epoch, nil
		}
		if perr != nil {
			return fmt.Errorf("coord: CS answered 409 without a usable %s header: %q", EpochHeader, a.epoch)
		}
		return &EpochConflictError{Group: group, CommitEpoch: epoch, Epoch: cur}
	default:
		return a.statusErr()
	}
}

// Epoch returns the CS's current epoch for group.
func (c *Client) Epoch(ctx context.Context, group string) (uint64, error) {
	a, err := c.do(ctx, http.MethodGet, group, "epoch", nil)
	if err != nil {
		return 0, err
	}
	if a.code != http.StatusOK {
		return 0, a.statusErr()
	}
	e, err := strconv.ParseUint(a.epoch, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("coord: CS answered 200 without a usable %s header: %q", EpochHeader, a.epoch)
	}
	return e, nil
}

// ClientTLS configures NewClientTLS.
type ClientTLS struct {
	// Certificate is presented to the CS as the member's identity (issued by
	// the deployment CA, naming the member). nil: no client certificate
	// (only an open CS accepts that).
	Certificate *identity.Certificate
	// Roots verifies the CS's certificate (the deployment CA; or, for a CS
	// with -dev-cert, that certificate). Required unless
	// DevInsecureSkipVerify.
	Roots *x509.CertPool
	// DevInsecureSkipVerify does not verify the CS's certificate at all:
	// anyone on the path can impersonate the CS. Development only.
	DevInsecureSkipVerify bool
	// Timeout bounds one HTTP exchange; 0: 30 s.
	Timeout time.Duration
}

// ErrNoCSRoots: NewClientTLS got neither Roots nor DevInsecureSkipVerify.
var ErrNoCSRoots = errors.New("coord: no CA pool to verify the CS's certificate (set ClientTLS.Roots)")

// NewClientTLS returns a Client for the HTTPS CS at baseURL that presents
// cfg.Certificate and verifies the CS against cfg.Roots (TLS 1.3). Errors:
// ErrNoCSRoots; a baseURL that is not https://host[:port].
func NewClientTLS(baseURL string, cfg ClientTLS) (*Client, error) {
	if !strings.HasPrefix(baseURL, "https://") {
		return nil, fmt.Errorf("coord: CS URL %q must be https://host:port for a TLS client", baseURL)
	}
	if cfg.Roots == nil && !cfg.DevInsecureSkipVerify {
		return nil, ErrNoCSRoots
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: cfg.Roots, InsecureSkipVerify: cfg.DevInsecureSkipVerify}
	if cfg.Certificate != nil {
		tc.Certificates = []tls.Certificate{cfg.Certificate.TLS()}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	hc := &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}}
	return NewClient(baseURL, hc)
}
