package coord

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
)

func TestAckEndpoint(t *testing.T) {
	cs := newTestCS(t, NewMemStore())
	ctx := context.Background()
	if err := cs.client.Ack(ctx, "g", 0, 0, ""); err == nil {
		t.Fatal("ack for an unknown group accepted")
	}
	if _, err := cs.client.Join(ctx, "g", fakeKeyPackage("A")); err != nil {
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
	other, _ := (&EpochAck{GroupID: []byte("h"), Epoch: 0, Leaf: 1}).Marshal()
	for _, body := range [][]byte{{1, 2, 3}, other} {
		if resp, msg := cs.post(t, "/v1/groups/g/acks", body); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("bad ack: %d %s", resp.StatusCode, msg)
		}
	}
	acks := cs.rec.Track("ack", "g")
	if len(acks) != 1 || acks[0].Num != 0 {
		t.Fatalf("forwarded acks: %+v", acks)
	}
	a, err := UnmarshalEpochAck(acks[0].Data)
	if err != nil || a.Leaf != 3 || a.Epoch != 0 || string(a.GroupID) != "g" {
		t.Fatalf("forwarded ack %+v %v", a, err)
	}
}

func TestEpochAckWire(t *testing.T) {
	for _, tc := range []struct {
		a    EpochAck
		want []byte
	}{
		// group "g", epoch 3, leaf 1, identity empty (as posted) / "al" (as forwarded)
		{EpochAck{GroupID: []byte("g"), Epoch: 3, Leaf: 1}, []byte{1, 'g', 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0}},
		{EpochAck{GroupID: []byte("g"), Epoch: 3, Leaf: 1, Identity: []byte("al")}, []byte{1, 'g', 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 2, 'a', 'l'}},
	} {
		enc, err := tc.a.Marshal()
		if err != nil || !bytes.Equal(enc, tc.want) {
			t.Fatalf("Marshal(%+v) = %x %v, want %x", tc.a, enc, err, tc.want)
		}
		got, err := UnmarshalEpochAck(enc)
		if err != nil || string(got.GroupID) != "g" || got.Epoch != 3 || got.Leaf != 1 || !bytes.Equal(got.Identity, tc.a.Identity) {
			t.Fatalf("Unmarshal: %+v %v", got, err)
		}
	}
	for name, data := range map[string][]byte{
		"no identity":       {1, 'g', 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1},
		"identity too long": append([]byte{1, 'g', 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0x41, 0x00}, make([]byte, 256)...),
		"trailing":          {1, 'g', 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 9},
	} {
		if _, err := UnmarshalEpochAck(data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := (&EpochAck{GroupID: []byte("g"), Identity: make([]byte, 256)}).Marshal(); err == nil {
		t.Error("Marshal accepted a 256-byte identity")
	}
}

// A CS whose forwarder cannot carry acks has no ack endpoint.
func TestAckUnsupported(t *testing.T) {
	srv, err := NewServer(Config{Store: NewMemStore(), Forwarder: plainForwarder{}})
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

func FuzzUnmarshalEpochAck(f *testing.F) {
	seed, _ := (&EpochAck{GroupID: []byte("room"), Epoch: 7, Leaf: 2}).Marshal()
	f.Add(seed)
	stamped, _ := (&EpochAck{GroupID: []byte("room"), Epoch: 7, Leaf: 2, Identity: []byte("alice")}).Marshal()
	f.Add(stamped)
	f.Add([]byte{})
	f.Add([]byte{0x04, 'r', 'o', 'o', 'm', 0, 0})
	f.Add([]byte{0x01, 'g', 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1}) // without identity (the old layout)
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := UnmarshalEpochAck(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		enc, err := a.Marshal()
		if err != nil || !bytes.Equal(enc, data) {
			t.Fatalf("decode/encode mismatch: %x -> %+v -> %x (%v)", data, a, enc, err)
		}
	})
}
