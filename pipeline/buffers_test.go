package pipeline

import "testing"

// TestBuffersLIFO: Get hands back the most recently returned buffer that
// is large enough, keeps at most max buffers, and makes a new buffer of at
// least the default size when none fits.
func TestBuffersLIFO(t *testing.T) {
	b := NewBuffers(2, 64)
	x, y, z := make([]byte, 10, 100), make([]byte, 0, 100), make([]byte, 0, 100)
	b.Put(x)
	b.Put(y)
	b.Put(z) // over max: dropped
	if got := b.Get(50); cap(got) != 100 || &got[:1][0] != &y[:1][0] {
		t.Fatal("Get did not return the most recently returned buffer")
	}
	got := b.Get(50)
	if len(got) != 0 || &got[:1][0] != &x[:1][0] {
		t.Fatal("Get did not return the earlier buffer, emptied")
	}
	if got := b.Get(10); cap(got) != 64 {
		t.Fatalf("empty list: cap %d, want a new buffer of 64", cap(got))
	}
	b.Put(make([]byte, 0, 8))
	if got := b.Get(32); cap(got) < 32 {
		t.Fatalf("too small a buffer handed out: cap %d", cap(got))
	}
	b.Put(nil) // ignored
	if got := b.Get(1); cap(got) != 64 {
		t.Fatalf("nil was kept: cap %d", cap(got))
	}
}

func TestBuffersAllocs(t *testing.T) {
	b := NewBuffers(4, 64)
	b.Put(make([]byte, 0, 64))
	if a := testing.AllocsPerRun(100, func() { b.Put(b.Get(64)) }); a != 0 {
		t.Fatalf("%v allocations per Get+Put", a)
	}
}
