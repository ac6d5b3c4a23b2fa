package rtpingest

import "fmt"

// NAL unit types of RFC 7798 §4.4 and H.265 Table 7-1.
const (
	h265BLA      = 16 // IRAP pictures are 16 to 23
	h265RsvIRAP  = 23
	h265VPS      = 32
	h265SPS      = 33
	h265PPS      = 34
	h265AUD      = 35
	h265PrefixSE = 39
	h265AP       = 48
	h265FU       = 49
	h265PACI     = 50
)

// h265 depacketizes RFC 7798 single NAL unit packets, aggregation packets
// and fragmentation units, without DONL fields (sprop-max-don-diff 0).
type h265 struct{}

func (h265) noFrame([]byte) bool { return false }
func (h265) perPacket() bool     { return false }

func (h265) begins(b []byte) bool {
	if len(b) < 3 {
		return false
	}
	switch typ := b[0] >> 1 & 0x3f; typ {
	case h265AP:
		if len(b) < 6 {
			return false
		}
		return h265Begins(b[4]>>1&0x3f, b[6:])
	case h265FU:
		if b[2]&0x80 == 0 {
			return false
		}
		return h265Begins(b[2]&0x3f, b[3:])
	default:
		return h265Begins(typ, b[2:])
	}
}

// h265Begins: parameter sets, AUD and prefix SEI precede the first slice
// segment (H.265 §7.4.2.4.4); a slice segment starts a picture when its
// first_slice_segment_in_pic_flag (first bit) is 1.
func h265Begins(typ byte, rbsp []byte) bool {
	switch {
	case typ >= h265VPS && typ <= h265AUD, typ == h265PrefixSE:
		return true
	case typ < 32:
		return len(rbsp) > 0 && rbsp[0]&0x80 != 0
	}
	return false
}

func (h265) add(f *frameState, b []byte) error {
	if len(b) < 3 {
		return fmt.Errorf("%w: H.265 payload of %d bytes", ErrMalformed, len(b))
	}
	if b[0]&0x80 != 0 {
		return fmt.Errorf("%w: H.265 forbidden_zero_bit set", ErrMalformed)
	}
	switch typ := b[0] >> 1 & 0x3f; typ {
	case h265AP:
		if f.inFU {
			return fmt.Errorf("%w: H.265 AP inside an unfinished FU", ErrMalformed)
		}
		for rest := b[2:]; len(rest) > 0; {
			if len(rest) < 2 {
				return fmt.Errorf("%w: AP size field truncated", ErrMalformed)
			}
			n := int(rest[0])<<8 | int(rest[1])
			if n < 2 || len(rest)-2 < n {
				return fmt.Errorf("%w: AP unit of %d bytes, %d left", ErrMalformed, n, len(rest)-2)
			}
			if t := rest[2] >> 1 & 0x3f; rest[2]&0x80 != 0 || t >= h265AP {
				return fmt.Errorf("%w: AP holds NAL unit type %d", ErrMalformed, t)
			}
			rest = rest[2+n:]
		}
		for rest := b[2:]; len(rest) > 0; {
			n := int(rest[0])<<8 | int(rest[1])
			if err := h265NAL(f, rest[2:2+n]); err != nil {
				return err
			}
			rest = rest[2+n:]
		}
		return nil
	case h265FU:
		if len(b) < 4 {
			return fmt.Errorf("%w: H.265 FU of %d bytes", ErrMalformed, len(b))
		}
		start, end, inner := b[2]&0x80 != 0, b[2]&0x40 != 0, b[2]&0x3f
		switch {
		case start && end:
			return fmt.Errorf("%w: H.265 FU with both S and E bits (RFC 7798 §4.4.3)", ErrMalformed)
		case inner >= h265AP:
			return fmt.Errorf("%w: H.265 FU carries NAL unit type %d", ErrMalformed, inner)
		case start && f.inFU:
			return fmt.Errorf("%w: H.265 FU start inside a fragment", ErrMalformed)
		case !start && !f.inFU:
			return fmt.Errorf("%w (H.265 FU)", errNoStart)
		}
		if len(f.data)+len(b) > MaxFrameSize {
			return ErrTooLarge
		}
		if start {
			f.data = append(f.data, annexBStartCode...)
			f.data = append(f.data, b[0]&0x81|inner<<1, b[1])
			h265Flags(f, inner)
			f.inFU = true
		}
		f.data = append(f.data, b[3:]...)
		if end {
			f.inFU = false
		}
		return nil
	case h265PACI:
		return fmt.Errorf("%w: H.265 PACI packets not supported", ErrMalformed)
	default:
		if f.inFU {
			return fmt.Errorf("%w: H.265 NAL unit inside an unfinished FU", ErrMalformed)
		}
		if typ > h265PACI {
			return fmt.Errorf("%w: H.265 NAL unit type %d reserved for RTP", ErrMalformed, typ)
		}
		return h265NAL(f, b)
	}
}

func h265NAL(f *frameState, nal []byte) error {
	if len(f.data)+4+len(nal) > MaxFrameSize {
		return ErrTooLarge
	}
	h265Flags(f, nal[0]>>1&0x3f)
	f.data = append(f.data, annexBStartCode...)
	f.data = append(f.data, nal...)
	return nil
}

func h265Flags(f *frameState, typ byte) {
	if typ < 32 {
		f.vcl = true
		if typ >= h265BLA && typ <= h265RsvIRAP {
			f.keyframe = true
		}
	}
}
