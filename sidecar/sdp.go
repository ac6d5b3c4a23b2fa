package sidecar

import (
	"fmt"
	"io"
	"net"
	"strings"
)

// WriteSDP writes a session description (RFC 8866) of the RTP outputs for
// a receiver listening at their destination addresses, so that a player or
// recorder needs no hand-written SDP:
//
//	ffmpeg -protocol_whitelist file,udp,rtp -i out.sdp -c copy out.mp4
//
// H.264 is described as packetization-mode 1 (RFC 6184 §8.1), H.265, VP8
// and VP9 by their 90 kHz rtpmap (RFC 7798, 7741, 9628), Opus as
// opus/48000/2 (RFC 7587 §7).
func WriteSDP(w io.Writer, outs []RTPOutput) error {
	var b strings.Builder
	if len(outs) == 0 {
		return fmt.Errorf("sidecar: no RTP outputs to describe")
	}
	host, _, err := net.SplitHostPort(outs[0].Addr)
	if err != nil {
		return fmt.Errorf("sidecar: RTP output address %q: %w", outs[0].Addr, err)
	}
	fmt.Fprintf(&b, "v=0\r\no=- 0 0 IN %s %s\r\ns=sframe-sidecar\r\nt=0 0\r\n", ipVersion(host), host)
	for _, o := range outs {
		host, port, err := net.SplitHostPort(o.Addr)
		if err != nil {
			return fmt.Errorf("sidecar: RTP output address %q: %w", o.Addr, err)
		}
		pt := o.payloadType()
		switch o.Codec {
		case H264:
			fmt.Fprintf(&b, "m=video %s RTP/AVP %d\r\nc=IN %s %s\r\na=rtpmap:%d H264/90000\r\na=fmtp:%d packetization-mode=1\r\n",
				port, pt, ipVersion(host), host, pt, pt)
		case H265, VP8, VP9:
			fmt.Fprintf(&b, "m=video %s RTP/AVP %d\r\nc=IN %s %s\r\na=rtpmap:%d %s/90000\r\n",
				port, pt, ipVersion(host), host, pt, strings.ToUpper(string(o.Codec)))
		case Opus:
			fmt.Fprintf(&b, "m=audio %s RTP/AVP %d\r\nc=IN %s %s\r\na=rtpmap:%d opus/48000/2\r\n", port, pt, ipVersion(host), host, pt)
		default:
			return fmt.Errorf("sidecar: RTP output for %s: unknown codec %q (want h264, h265, vp8, vp9 or opus)", o.Track, o.Codec)
		}
		fmt.Fprintf(&b, "a=recvonly\r\n")
	}
	_, err = io.WriteString(w, b.String())
	return err
}

func ipVersion(host string) string {
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return "IP6"
	}
	return "IP4"
}

// payloadType is the output's RTP payload type: PayloadType, or 96 for
// H.264 and 111 for Opus.
func (o RTPOutput) payloadType() uint8 {
	switch {
	case o.PayloadType != 0:
		return o.PayloadType
	case o.Codec == Opus:
		return 111
	}
	return 96
}
