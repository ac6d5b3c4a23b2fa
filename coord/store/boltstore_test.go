package store

import "testing"

func FuzzOutboxEntry(f *testing.F) {
	for _, e := range []OutboxEntry{
		{Kind: OutboxRequest, Num: 3, Payload: []byte("req")},
		{Kind: OutboxCommit, Num: 9, Payload: []byte("c"), Welcome: []byte("w")},
	} {
		enc, _ := marshalOutboxEntry(&e)
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := unmarshalOutboxEntry(data)
		if err != nil {
			return
		}
		enc, err := marshalOutboxEntry(&e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := unmarshalOutboxEntry(enc); err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
	})
}
