package rtpingest

import "fmt"

// opus takes each RFC 7587 packet as one frame; every Opus packet decodes
// on its own.
type opus struct{}

func (opus) begins([]byte) bool { return true }
func (opus) perPacket() bool    { return true }

// noFrame: packets of at most 2 bytes are DTX (a TOC byte and at most one
// byte of frame): the encoder's "nothing to send" (RFC 6716 §2.1.9),
// treated as a gap by the decoder, as libwebrtc does.
func (opus) noFrame(b []byte) bool { return len(b) <= 2 }

func (opus) add(f *frameState, b []byte) error {
	if len(b) > MaxFrameSize {
		return fmt.Errorf("%w: Opus packet of %d bytes", ErrTooLarge, len(b))
	}
	f.data = append(f.data, b...)
	f.keyframe, f.vcl = true, true
	return nil
}
