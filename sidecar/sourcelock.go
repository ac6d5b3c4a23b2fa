package sidecar

import (
	"net"
	"net/netip"
	"time"
)

// DefaultSourceQuiet is how long the sender an RTP input is locked to may
// be silent before another sender can take its place.
const DefaultSourceQuiet = 3 * time.Second

// sourceLock admits the datagrams of one sender to an RTP input: anyone
// who can reach a UDP port can send to it, and what the input admits is
// sealed and published as authentic media. The sender is the configured
// address (Allow; port 0 admits any port of that host), or else the first
// sender seen, until it has been quiet for the quiet period (an encoder
// restarting from a new port).
type sourceLock struct {
	allow netip.AddrPort // zero: lock to the first sender
	quiet time.Duration

	cur  netip.AddrPort
	have bool
	last time.Time
}

// admit reports whether a datagram from from, received at now, is taken.
func (l *sourceLock) admit(from net.Addr, now time.Time) bool {
	ua, ok := from.(*net.UDPAddr)
	if !ok {
		return false
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if l.allow.IsValid() {
		return ap.Addr() == l.allow.Addr() && (l.allow.Port() == 0 || ap.Port() == l.allow.Port())
	}
	if !l.have || ap == l.cur || now.Sub(l.last) > l.quiet {
		l.cur, l.have = ap, true
	}
	if ap != l.cur {
		return false
	}
	l.last = now
	return true
}
