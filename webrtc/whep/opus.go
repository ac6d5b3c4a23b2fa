package whep

import (
	"errors"
	"time"
)

// errOpusPacket means an Opus packet's TOC (RFC 6716 section 3.1) is
// missing or names an impossible frame count.
var errOpusPacket = errors.New("whep: malformed Opus packet")

// opusDuration returns the audio duration of one Opus packet from its TOC
// byte and, for code 3, its frame count byte (RFC 6716 section 3.2.5).
func opusDuration(p []byte) (time.Duration, error) {
	if len(p) == 0 {
		return 0, errOpusPacket
	}
	config := p[0] >> 3
	var frame time.Duration
	switch {
	case config < 12: // SILK-only: 10, 20, 40, 60 ms
		frame = [4]time.Duration{10, 20, 40, 60}[config%4] * time.Millisecond
	case config < 16: // hybrid: 10, 20 ms
		frame = [2]time.Duration{10, 20}[config%2] * time.Millisecond
	default: // CELT-only: 2.5, 5, 10, 20 ms
		frame = [4]time.Duration{2500, 5000, 10000, 20000}[config%4] * time.Microsecond
	}
	n := 1
	switch p[0] & 3 {
	case 1, 2:
		n = 2
	case 3:
		if len(p) < 2 {
			return 0, errOpusPacket
		}
		n = int(p[1] & 0x3f)
	}
	d := time.Duration(n) * frame
	if n == 0 || d > 120*time.Millisecond { // section 3.2.5: at most 120 ms
		return 0, errOpusPacket
	}
	return d, nil
}
