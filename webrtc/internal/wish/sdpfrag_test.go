package wish

import (
	"errors"
	"strings"
	"testing"
)

const fragExample = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n" +
	"a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n" +
	"a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw network-id 2\r\n" +
	"a=end-of-candidates\r\n"

func TestParseSDPFrag(t *testing.T) {
	f, err := ParseSDPFrag(fragExample)
	if err != nil {
		t.Fatal(err)
	}
	if f.Ufrag != "EsAw" || f.Pwd != "P2uYro0UCOQ4zxjKXaWCBui1" || !f.End || len(f.Candidates) != 2 {
		t.Fatalf("%+v", f)
	}
	if c := f.Candidates[1]; c.Mid != "0" || c.MLine != 0 || !strings.HasPrefix(c.Candidate, "candidate:3471623853 1 udp") {
		t.Fatalf("%+v", c)
	}
	for _, bad := range []string{"hello", "a=candidate:1 1 udp", "=x", strings.Repeat("a=candidate:1 1 udp 1 192.0.2.1 1 typ host\n", 65)} {
		if _, err := ParseSDPFrag(bad); err == nil {
			t.Errorf("%.40q parsed", bad)
		}
	}
}

func FuzzParseSDPFrag(f *testing.F) {
	f.Add(fragExample)
	f.Add("a=end-of-candidates\n")
	f.Add("m=video 9 UDP 96\na=candidate:x 1 udp 1 ::1 9 typ host\n")
	f.Fuzz(func(t *testing.T, s string) {
		fr, err := ParseSDPFrag(s)
		if err != nil {
			return
		}
		for _, c := range fr.Candidates {
			if !strings.HasPrefix(c.Candidate, "candidate:") || c.MLine < -1 {
				t.Fatalf("bad candidate %+v", c)
			}
		}
	})
}

func FuzzParseOffer(f *testing.F) {
	f.Add("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\n")
	f.Add("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseOffer(s)
		if err == nil && len(d.MediaDescriptions) == 0 {
			t.Fatal("accepted an offer without media")
		}
		var re *RequestError
		if err != nil && (!errors.As(err, &re) || re.Status < 400 || re.Status > 499) {
			t.Fatalf("error %v is not a 4xx RequestError", err)
		}
	})
}
