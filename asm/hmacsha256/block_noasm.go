//go:build !amd64 || purego

package hmacsha256

func block(h *[8]uint32, p []byte) { blockGeneric(h, p) }

func newCTR(*[16]byte) *CTR { return nil }

func stitchEnabled() bool { return false }

func final(*[8]uint32, []byte, *[8]uint32, *[Size]byte) bool { return false }

func ctrBlocks(*CTR, *[16]byte, *byte, *byte, int, *[8]uint32, *byte, *byte, int) {
	panic("hmacsha256: no stitched kernel")
}

func ctrPairBlocks(*CTR, *[16]byte, *byte, *byte, *[16]byte, *byte) {
	panic("hmacsha256: no stitched kernel")
}
