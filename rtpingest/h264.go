package rtpingest

import "fmt"

var annexBStartCode = []byte{0, 0, 0, 1}

// NAL unit types of RFC 6184 §5.2 and H.264 Table 7-1.
const (
	nalSlice = 1
	nalIDR   = 5
	nalSEI   = 6
	nalSPS   = 7
	nalPPS   = 8
	nalAUD   = 9
	nalSTAPA = 24
	nalFUA   = 28
)

// h264 depacketizes RFC 6184 packetization modes 0 and 1: single NAL unit
// packets, STAP-A and FU-A. Access units come out in Annex-B form.
type h264 struct{}

func (h264) noFrame([]byte) bool { return false }
func (h264) perPacket() bool     { return false }

// begins: a NAL unit that can only start an access unit (H.264 §7.4.1.2.3:
// AUD, SPS, PPS, SEI come before the primary picture's first slice) or a
// slice with first_mb_in_slice 0, whose ue(v) code is the single bit 1.
func (h264) begins(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	switch typ := b[0] & 0x1f; typ {
	case nalSTAPA:
		if len(b) < 4 {
			return false
		}
		return h264Begins(b[3], b[4:])
	case nalFUA:
		if len(b) < 3 || b[1]&0x80 == 0 {
			return false
		}
		return h264Begins(b[1]&0x1f, b[2:])
	default:
		return h264Begins(typ, b[1:])
	}
}

func h264Begins(typ byte, rbsp []byte) bool {
	switch typ & 0x1f {
	case nalSEI, nalSPS, nalPPS, nalAUD:
		return true
	case nalSlice, nalIDR:
		return len(rbsp) > 0 && rbsp[0]&0x80 != 0
	}
	return false
}

func (h264) add(f *frameState, b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty H.264 payload", ErrMalformed)
	}
	if b[0]&0x80 != 0 {
		return fmt.Errorf("%w: H.264 forbidden_zero_bit set", ErrMalformed)
	}
	switch typ := b[0] & 0x1f; {
	case typ >= 1 && typ <= 23:
		if f.inFU {
			return fmt.Errorf("%w: H.264 NAL unit inside an unfinished FU-A", ErrMalformed)
		}
		return h264NAL(f, b)
	case typ == nalSTAPA:
		if f.inFU {
			return fmt.Errorf("%w: STAP-A inside an unfinished FU-A", ErrMalformed)
		}
		// Validate before appending, so a bad packet adds nothing.
		for rest := b[1:]; len(rest) > 0; {
			if len(rest) < 2 {
				return fmt.Errorf("%w: STAP-A size field truncated", ErrMalformed)
			}
			n := int(rest[0])<<8 | int(rest[1])
			if n == 0 || len(rest)-2 < n {
				return fmt.Errorf("%w: STAP-A unit of %d bytes, %d left", ErrMalformed, n, len(rest)-2)
			}
			if rest[2]&0x80 != 0 || rest[2]&0x1f == 0 || rest[2]&0x1f > 23 {
				return fmt.Errorf("%w: STAP-A holds NAL unit type %d", ErrMalformed, rest[2]&0x1f)
			}
			rest = rest[2+n:]
		}
		for rest := b[1:]; len(rest) > 0; {
			n := int(rest[0])<<8 | int(rest[1])
			if err := h264NAL(f, rest[2:2+n]); err != nil {
				return err
			}
			rest = rest[2+n:]
		}
		return nil
	case typ == nalFUA:
		if len(b) < 3 {
			return fmt.Errorf("%w: FU-A of %d bytes", ErrMalformed, len(b))
		}
		start, end := b[1]&0x80 != 0, b[1]&0x40 != 0
		inner := b[1] & 0x1f
		switch {
		case start && end:
			return fmt.Errorf("%w: FU-A with both start and end bits (RFC 6184 §5.8)", ErrMalformed)
		case inner == 0 || inner > 23:
			return fmt.Errorf("%w: FU-A carries NAL unit type %d", ErrMalformed, inner)
		case start && f.inFU:
			return fmt.Errorf("%w: FU-A start inside a fragment", ErrMalformed)
		case !start && !f.inFU:
			return fmt.Errorf("%w (FU-A)", errNoStart)
		}
		if len(f.data)+len(b) > MaxFrameSize {
			return ErrTooLarge
		}
		if start {
			f.data = append(f.data, annexBStartCode...)
			f.data = append(f.data, b[0]&0xe0|inner)
			h264Flags(f, inner)
			f.inFU = true
		}
		f.data = append(f.data, b[2:]...)
		if end {
			f.inFU = false
		}
		return nil
	default:
		return fmt.Errorf("%w: H.264 packet type %d not supported (packetization-mode 2)", ErrMalformed, typ)
	}
}

func h264NAL(f *frameState, nal []byte) error {
	if len(f.data)+4+len(nal) > MaxFrameSize {
		return ErrTooLarge
	}
	h264Flags(f, nal[0]&0x1f)
	f.data = append(f.data, annexBStartCode...)
	f.data = append(f.data, nal...)
	return nil
}

func h264Flags(f *frameState, typ byte) {
	switch {
	case typ == nalIDR:
		f.keyframe, f.vcl = true, true
	case typ >= 1 && typ <= 5:
		f.vcl = true
	}
}
