package sidecar

import (
	"strings"
	"testing"
)

func TestWriteSDP(t *testing.T) {
	var b strings.Builder
	err := WriteSDP(&b, []RTPOutput{{Track: "video", Codec: H264, Addr: "127.0.0.1:6004"}, {Track: "audio", Codec: Opus, Addr: "127.0.0.1:6006", PayloadType: 100}})
	if err != nil {
		t.Fatal(err)
	}
	want := "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=sframe-sidecar\r\nt=0 0\r\n" +
		"m=video 6004 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=recvonly\r\n" +
		"m=audio 6006 RTP/AVP 100\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:100 opus/48000/2\r\na=recvonly\r\n"
	if b.String() != want {
		t.Fatalf("SDP:\n%s\nwant:\n%s", b.String(), want)
	}
	for _, bad := range [][]RTPOutput{nil, {{Codec: H264, Addr: "no-port"}}, {{Codec: "vp7", Addr: "127.0.0.1:1"}}} {
		if err := WriteSDP(&b, bad); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}
