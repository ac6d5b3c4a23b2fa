package whep

import (
	"testing"
	"time"
)

func TestOpusDuration(t *testing.T) {
	check := func(p []byte, want time.Duration) {
		t.Helper()
		got, err := opusDuration(p)
		if err != nil || got != want {
			t.Errorf("%x: %v, %v; want %v", p, got, err, want)
		}
	}
	check([]byte{31 << 3}, 20*time.Millisecond)
	check([]byte{15 << 3}, 20*time.Millisecond)
	check([]byte{3<<3 | 1}, 120*time.Millisecond)                                  // SILK 60 ms, two frames
	check([]byte{16<<3 | 3, 4}, 10*time.Millisecond)                               // CELT 2.5 ms x 4
	check([]byte{1<<3 | 3, 6}, 120*time.Millisecond)                               // SILK 20 ms x 6
	for _, bad := range [][]byte{nil, {3<<3 | 3}, {3<<3 | 3, 3}, {31<<3 | 3, 0}} { // truncated, 180 ms, 0 frames
		if _, err := opusDuration(bad); err == nil {
			t.Errorf("%x accepted", bad)
		}
	}
}

func FuzzOpusDuration(f *testing.F) {
	f.Add([]byte{0xfc, 0xff, 0xfe})
	f.Add([]byte{0x1b, 0x02})
	f.Fuzz(func(t *testing.T, p []byte) {
		d, err := opusDuration(p)
		if err == nil && (d <= 0 || d > 120*time.Millisecond) {
			t.Fatalf("%x: %v", p, d)
		}
	})
}
