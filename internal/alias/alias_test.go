package alias

import "testing"

func TestOverlap(t *testing.T) {
	b := make([]byte, 32)
	for _, tc := range []struct {
		x, y         []byte
		any, inexact bool
	}{
		{b[:8], b[8:16], false, false},
		{b[:8], b[:8], true, false},
		{b[:8], b[4:12], true, true},
		{b[4:12], b[:8], true, true},
		{b[:8], nil, false, false},
		{b[:8], make([]byte, 8), false, false},
	} {
		if AnyOverlap(tc.x, tc.y) != tc.any || InexactOverlap(tc.x, tc.y) != tc.inexact {
			t.Errorf("%p+%d %p+%d: any %v inexact %v", tc.x, len(tc.x), tc.y, len(tc.y), AnyOverlap(tc.x, tc.y), InexactOverlap(tc.x, tc.y))
		}
	}
}

func TestSliceForAppend(t *testing.T) {
	in := make([]byte, 2, 10)
	head, tail := SliceForAppend(in, 5)
	if len(head) != 7 || len(tail) != 5 || &head[0] != &in[0] {
		t.Fatal("did not reuse capacity")
	}
	head, tail = SliceForAppend([]byte{1, 2}, 20)
	if len(head) != 22 || head[1] != 2 || len(tail) != 20 {
		t.Fatal("did not grow")
	}
}
