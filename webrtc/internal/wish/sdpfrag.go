package wish

import (
	"fmt"
	"strings"
)

// SDPFrag is a trickle ICE SDP fragment (application/trickle-ice-sdpfrag,
// RFC 8840 section 9), the body of a WHIP/WHEP PATCH.
type SDPFrag struct {
	Ufrag, Pwd string      // session or first media level; empty if absent
	Candidates []Candidate // in order
	End        bool        // a=end-of-candidates seen
}

// Candidate is one a=candidate line with the media section it belongs to.
type Candidate struct {
	Mid       string // a=mid of its m= section; "" at session level
	MLine     int    // index of its m= section; -1 at session level
	Candidate string // "candidate:..." as pion and browsers take it
}

// Bounds of a fragment: a browser trickles a handful of candidates.
const (
	maxFragLines      = 256
	maxFragCandidates = 64
)

// ParseSDPFrag parses a trickle ICE fragment. It accepts LF or CRLF line
// ends and ignores attributes it does not know; it fails on lines that are
// not SDP (type=value) and on more than 64 candidates.
func ParseSDPFrag(s string) (*SDPFrag, error) {
	f := &SDPFrag{}
	mline, mid := -1, ""
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	if len(lines) > maxFragLines {
		return nil, fmt.Errorf("%d lines, at most %d", len(lines), maxFragLines)
	}
	for i, l := range lines {
		if l == "" {
			continue
		}
		if len(l) < 2 || l[1] != '=' || l[0] < 'a' || l[0] > 'z' {
			return nil, fmt.Errorf("line %d is not an SDP line (type=value)", i+1)
		}
		v := l[2:]
		switch {
		case l[0] == 'm':
			mline++
			mid = ""
		case l[0] != 'a':
		case strings.HasPrefix(v, "mid:"):
			mid = v[len("mid:"):]
		case strings.HasPrefix(v, "ice-ufrag:"):
			if f.Ufrag == "" {
				f.Ufrag = v[len("ice-ufrag:"):]
			}
		case strings.HasPrefix(v, "ice-pwd:"):
			if f.Pwd == "" {
				f.Pwd = v[len("ice-pwd:"):]
			}
		case strings.HasPrefix(v, "candidate:"):
			if len(f.Candidates) == maxFragCandidates {
				return nil, fmt.Errorf("more than %d candidates", maxFragCandidates)
			}
			if len(strings.Fields(v)) < 8 { // foundation component transport priority addr port typ type
				return nil, fmt.Errorf("line %d: candidate has %d fields, at least 8", i+1, len(strings.Fields(v)))
			}
			f.Candidates = append(f.Candidates, Candidate{Mid: mid, MLine: mline, Candidate: v})
		case v == "end-of-candidates":
			f.End = true
		}
	}
	return f, nil
}
