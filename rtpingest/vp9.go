package rtpingest

import "fmt"

// vp9 depacketizes RFC 9628: each packet has a payload descriptor; a frame
// (all its spatial layers) ends with the marker bit.
type vp9 struct{}

func (vp9) noFrame([]byte) bool { return false }
func (vp9) perPacket() bool     { return false }

// vp9Descriptor returns the descriptor's length and whether the packet
// starts a picture: B=1 in spatial layer 0 (RFC 9628 §4.2).
func vp9Descriptor(b []byte) (n int, start bool, err error) {
	trunc := fmt.Errorf("%w: VP9 descriptor truncated", ErrMalformed)
	if len(b) < 1 {
		return 0, false, fmt.Errorf("%w: empty VP9 payload", ErrMalformed)
	}
	h := b[0]
	i, p, l, fl, bb, v := h&0x80 != 0, h&0x40 != 0, h&0x20 != 0, h&0x10 != 0, h&0x08 != 0, h&0x02 != 0
	n = 1
	if i { // picture ID, 7 or 15 bits (M)
		if len(b) <= n {
			return 0, false, trunc
		}
		if b[n]&0x80 != 0 {
			n++
		}
		n++
	}
	sid := byte(0)
	if l { // layer indices: TID U SID D, plus TL0PICIDX in non-flexible mode
		if len(b) <= n {
			return 0, false, trunc
		}
		sid = b[n] >> 1 & 0x07
		n++
		if !fl {
			n++
		}
	}
	if fl && p { // reference indices: up to 3, N bit continues
		for k := 0; ; k++ {
			if len(b) <= n || k == 3 {
				return 0, false, fmt.Errorf("%w: VP9 reference indices truncated or more than 3", ErrMalformed)
			}
			more := b[n]&0x01 != 0
			n++
			if !more {
				break
			}
		}
	}
	if v { // scalability structure (§4.2.1)
		if len(b) <= n {
			return 0, false, trunc
		}
		ss := b[n]
		n++
		if ss&0x10 != 0 { // Y: resolutions of N_S+1 layers
			n += 4 * (int(ss>>5) + 1)
		}
		if ss&0x08 != 0 { // G: picture group description
			if len(b) <= n {
				return 0, false, trunc
			}
			ng := int(b[n])
			n++
			for range ng {
				if len(b) <= n {
					return 0, false, trunc
				}
				n += 1 + int(b[n]>>2&0x03)
			}
		}
	}
	if n >= len(b) {
		return 0, false, fmt.Errorf("%w: VP9 packet of %d bytes without payload after its %d-byte descriptor", ErrMalformed, len(b), n)
	}
	return n, bb && sid == 0, nil
}

func (vp9) begins(b []byte) bool {
	_, start, err := vp9Descriptor(b)
	return err == nil && start
}

func (vp9) add(f *frameState, b []byte) error {
	n, start, err := vp9Descriptor(b)
	if err != nil {
		return err
	}
	switch {
	case start && len(f.data) > 0:
		return fmt.Errorf("%w: VP9 picture start inside a picture", ErrMalformed)
	case !start && len(f.data) == 0:
		return fmt.Errorf("%w (VP9: no packet with B=1 in spatial layer 0)", errNoStart)
	case len(f.data)+len(b) > MaxFrameSize:
		return ErrTooLarge
	}
	if start {
		f.keyframe = vp9KeyFrame(b[n:])
		f.vcl = true
	}
	f.data = append(f.data, b[n:]...)
	return nil
}

// vp9KeyFrame reads the uncompressed header (VP9 bitstream §6.2):
// frame_marker (2 bits, 2), profile_low_bit, profile_high_bit, a reserved
// zero bit in profile 3, show_existing_frame, frame_type (0: KEY_FRAME).
// The descriptor's P bit is not used: some senders (ffmpeg) never set it.
func vp9KeyFrame(b []byte) bool {
	if len(b) < 1 || b[0]>>6 != 2 {
		return false
	}
	bit := 2
	profile := int(b[0]>>5&1) | int(b[0]>>4&1)<<1
	bit += 2
	if profile == 3 {
		bit++
	}
	if b[0]<<bit&0x80 != 0 { // show_existing_frame
		return false
	}
	bit++
	if bit >= 8 {
		if len(b) < 2 {
			return false
		}
		return b[1]<<(bit-8)&0x80 == 0
	}
	return b[0]<<bit&0x80 == 0
}
