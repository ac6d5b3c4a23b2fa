package wire

import (
	"bytes"
	"errors"
	"testing"
)

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
