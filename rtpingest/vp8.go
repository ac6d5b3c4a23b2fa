package rtpingest

import "fmt"

// vp8 depacketizes RFC 7741: each packet has a payload descriptor, and a
// frame starts at the packet with S=1 and partition index 0.
type vp8 struct{}

func (vp8) noFrame([]byte) bool { return false }
func (vp8) perPacket() bool     { return false }

// vp8Descriptor returns the descriptor's length and whether the packet
// starts a frame (RFC 7741 §4.2).
func vp8Descriptor(b []byte) (n int, start bool, err error) {
	if len(b) < 1 {
		return 0, false, fmt.Errorf("%w: empty VP8 payload", ErrMalformed)
	}
	n = 1
	if b[0]&0x80 != 0 { // X: extended control bits
		if len(b) < 2 {
			return 0, false, fmt.Errorf("%w: VP8 descriptor truncated", ErrMalformed)
		}
		x := b[1]
		n = 2
		if x&0x80 != 0 { // I: picture ID, 7 or 15 bits (M)
			if len(b) <= n {
				return 0, false, fmt.Errorf("%w: VP8 picture ID truncated", ErrMalformed)
			}
			if b[n]&0x80 != 0 {
				n++
			}
			n++
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			n++
		}
		if x&0x30 != 0 { // T or K: TID/Y/KEYIDX
			n++
		}
	}
	if n >= len(b) {
		return 0, false, fmt.Errorf("%w: VP8 packet of %d bytes without payload after its %d-byte descriptor", ErrMalformed, len(b), n)
	}
	return n, b[0]&0x10 != 0 && b[0]&0x07 == 0, nil
}

func (vp8) begins(b []byte) bool {
	_, start, err := vp8Descriptor(b)
	return err == nil && start
}

func (vp8) add(f *frameState, b []byte) error {
	n, start, err := vp8Descriptor(b)
	if err != nil {
		return err
	}
	switch {
	case start && len(f.data) > 0:
		return fmt.Errorf("%w: VP8 frame start inside a frame", ErrMalformed)
	case !start && len(f.data) == 0:
		return fmt.Errorf("%w (VP8: no packet with S=1, PID=0)", errNoStart)
	case len(f.data)+len(b) > MaxFrameSize:
		return ErrTooLarge
	}
	if start {
		// RFC 7741 §4.3: P, the lowest bit of the VP8 payload header,
		// is 0 for key frames.
		f.keyframe = b[n]&0x01 == 0
		f.vcl = true
	}
	f.data = append(f.data, b[n:]...)
	return nil
}
