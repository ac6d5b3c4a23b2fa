package coord

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/moqsframe/moqsframe/coord/store"
	"github.com/moqsframe/moqsframe/coord/wire"
)

// Catch-up archive. The draft (§4.2) has the CS forward items on MoQ tracks
// and keep no history; our relay has no cache and no FETCH, so a member that
// subscribed late, or whose subscription broke (relay or CS restart), would
// miss items for good. We keep, in the same atomic transaction that decides
// an item, its bytes, and serve them over HTTPS:
//
//	GET /v1/groups/{group}/commits/{epoch}   the Commit made in epoch (application/octet-stream)
//	GET /v1/groups/{group}/welcomes/{epoch}  the Welcome of that Commit
//	GET /v1/groups/{group}/requests/{seq}    the Request struct with that sequence number
//	GET /v1/groups/{group}/state             {"group","epoch","next_seq"}
//
// 404 when the item does not exist (yet). Items are deleted only with their
// group when it is retired (lifecycle.go) or, for a withdrawn commit, by
// the unprocessable endpoint; retention in a living group is an open item
// (docs/security-groups.md). This is our choice where the draft is silent.

type stateBody struct {
	Group   string `json:"group"`
	Epoch   uint64 `json:"epoch"`
	NextSeq uint64 `json:"next_seq"`
}

func (s *Server) registerArchive() {
	a, ok := s.store.(store.Archive)
	if !ok {
		return
	}
	item := func(ep string, get func(ctx context.Context, group string, n uint64) ([]byte, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			group := r.PathValue("group")
			if !wire.ValidGroupName(group) {
				s.fail(w, ep, http.StatusBadRequest, "", "invalid group name: use 1-255 characters from A-Z a-z 0-9 - . _ ~")
				return
			}
			n, err := strconv.ParseUint(r.PathValue("n"), 10, 64)
			if err != nil {
				s.fail(w, ep, http.StatusBadRequest, group, "the last path element must be a decimal epoch or sequence number")
				return
			}
			data, err := get(r.Context(), group, n)
			switch {
			case errors.Is(err, store.ErrUnknownGroup):
				s.fail(w, ep, http.StatusNotFound, group, fmt.Sprintf("group %q does not exist", group))
				return
			case errors.Is(err, store.ErrNotFound):
				s.fail(w, ep, http.StatusNotFound, group, fmt.Sprintf("no %s %d (yet)", ep, n))
				return
			case err != nil:
				s.log.Error("store archive read failed", "group", group, "err", err)
				s.fail(w, ep, http.StatusInternalServerError, group, "the CS could not read its archive; retry later")
				return
			}
			s.metrics.response(ep+"-get", http.StatusOK)
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(data)
		}
	}
	s.mux.HandleFunc("GET /v1/groups/{group}/commits/{n}", s.guard("commit-get", item("commit", a.ArchivedCommit)))
	s.mux.HandleFunc("GET /v1/groups/{group}/welcomes/{n}", s.guard("welcome-get", item("welcome", a.ArchivedWelcome)))
	s.mux.HandleFunc("GET /v1/groups/{group}/requests/{n}", s.guard("request-get", item("request", a.ArchivedRequest)))
	s.mux.HandleFunc("GET /v1/groups/{group}/state", s.guard("state", func(w http.ResponseWriter, r *http.Request) {
		const ep = "state"
		group := r.PathValue("group")
		if !wire.ValidGroupName(group) {
			s.fail(w, ep, http.StatusBadRequest, "", "invalid group name: use 1-255 characters from A-Z a-z 0-9 - . _ ~")
			return
		}
		e, n, err := a.State(r.Context(), group)
		if s.failRead(w, ep, group, err) {
			return
		}
		w.Header().Set(EpochHeader, strconv.FormatUint(e, 10))
		s.metrics.response(ep, http.StatusOK)
		writeJSON(w, http.StatusOK, stateBody{Group: group, Epoch: e, NextSeq: n})
	}))
}

// ErrNotFound is returned (wrapped) by CommitAt, WelcomeAt and RequestAt
// when the CS's archive has no such item (not decided yet, or a commit
// without a Welcome). It is store.ErrNotFound.
var ErrNotFound = store.ErrNotFound

// get fetches a raw archive item.
func (c *Client) get(ctx context.Context, group, suffix string) ([]byte, error) {
	if !wire.ValidGroupName(group) {
		return nil, fmt.Errorf("coord: invalid group name %q", group)
	}
	u := c.base.String() + "/v1/groups/" + group + "/" + suffix
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("coord: GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	data, err := readLimited(resp, 16<<20)
	if err != nil {
		return nil, fmt.Errorf("coord: reading answer of GET %s: %w", u, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return data, nil
	case http.StatusNotFound:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, suffix)
	default:
		a := &answer{code: resp.StatusCode}
		a.parseError(resp, data)
		return nil, a.statusErr()
	}
}

// CommitAt fetches the Commit made in epoch from the CS archive
// (ErrNotFound if none yet).
func (c *Client) CommitAt(ctx context.Context, group string, epoch uint64) ([]byte, error) {
	return c.get(ctx, group, "commits/"+strconv.FormatUint(epoch, 10))
}

// WelcomeAt fetches the Welcome of the Commit made in epoch (ErrNotFound if
// none yet).
func (c *Client) WelcomeAt(ctx context.Context, group string, epoch uint64) ([]byte, error) {
	return c.get(ctx, group, "welcomes/"+strconv.FormatUint(epoch, 10))
}

// RequestAt fetches the Request with sequence number seq (the RequestTrack
// payload).
func (c *Client) RequestAt(ctx context.Context, group string, seq uint64) ([]byte, error) {
	return c.get(ctx, group, "requests/"+strconv.FormatUint(seq, 10))
}

// State returns the group's epoch and next request sequence number.
func (c *Client) State(ctx context.Context, group string) (epoch, nextSeq uint64, err error) {
	a, err := c.do(ctx, http.MethodGet, group, "state", nil)
	if err != nil {
		return 0, 0, err
	}
	if a.code != http.StatusOK {
		return 0, 0, a.statusErr()
	}
	e, err := strconv.ParseUint(a.epoch, 10, 64)
	if err != nil || a.body.NextSeq == nil {
		return 0, 0, fmt.Errorf("coord: CS /state answer without epoch or next_seq")
	}
	return e, *a.body.NextSeq, nil
}

func readLimited(resp *http.Response, max int64) ([]byte, error) {
	lr := &io.LimitedReader{R: resp.Body, N: max + 1}
	data, err := io.ReadAll(lr)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("answer larger than %d bytes", max)
	}
	return data, nil
}
