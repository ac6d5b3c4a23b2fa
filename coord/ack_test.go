package coord

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/moqsframe/moqsframe/coord/store"
	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/coord/wire/wiretest"
)

func TestAckEndpoint(t *testing.T) {
	cs := newTestCS(t, store.NewMemStore())
	ctx := context.Background()
	if err := cs.client.Ack(ctx, "g", 0, 0, ""); err == nil {
		t.Fatal("ack for an unknown group accepted")
	}
	if _, err := cs.client.Join(ctx, "g", wiretest.KeyPackage("A")); err != nil {
		t.Fatal(err)
	}
	if err := cs.client.Ack(ctx, "g", 0, 3, ""); err != nil {
		t.Fatal(err)
	}
	// An epoch the CS has not decided is refused; nothing is forwarded.
	var se *StatusError
	if err := cs.client.Ack(ctx, "g", 1, 3, ""); !errors.As(err, &se) || se.Code != http.StatusBadRequest {
		t.Fatalf("ack for a future epoch: %v", err)
	}
	// Malformed and mismatched bodies get 400.
	other, _ := (&wire.EpochAck{GroupID: []byte("h"), Epoch: 0, Leaf: 1}).Marshal()
	for _, body := range [][]byte{{1, 2, 3}, other} {
		if resp, msg := cs.post(t, "/v1/groups/g/acks", body); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("bad ack: %d %s", resp.StatusCode, msg)
		}
	}
	acks := cs.rec.Track("ack", "g")
	if len(acks) != 1 || acks[0].Num != 0 {
		t.Fatalf("forwarded acks: %+v", acks)
	}
	a, err := wire.UnmarshalEpochAck(acks[0].Data)
	if err != nil || a.Leaf != 3 || a.Epoch != 0 || string(a.GroupID) != "g" {
		t.Fatalf("forwarded ack %+v %v", a, err)
	}
}

// A CS whose forwarder cannot carry acks has no ack endpoint.
func TestAckUnsupported(t *testing.T) {
	srv, err := NewServer(Config{Store: store.NewMemStore(), Forwarder: plainForwarder{}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "/v1/groups/g/acks", bytes.NewReader(nil))
	rw := &recordingWriter{header: http.Header{}}
	srv.ServeHTTP(rw, req)
	if rw.code != http.StatusNotFound && rw.code != http.StatusMethodNotAllowed {
		t.Fatalf("ack endpoint without an AckForwarder: %d", rw.code)
	}
}

type plainForwarder struct{}

func (plainForwarder) ForwardRequest(context.Context, string, uint64, []byte) error { return nil }
func (plainForwarder) ForwardCommit(context.Context, string, uint64, []byte) error  { return nil }
func (plainForwarder) ForwardWelcome(context.Context, string, uint64, []byte) error { return nil }

type recordingWriter struct {
	header http.Header
	code   int
}

func (w *recordingWriter) Header() http.Header         { return w.header }
func (w *recordingWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *recordingWriter) WriteHeader(code int)        { w.code = code }
