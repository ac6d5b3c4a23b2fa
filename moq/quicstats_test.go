package moq

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// lossyProxy forwards UDP datagrams between one client and server. Of the
// datagrams after the first 10 in each direction (the handshake), it drops
// every dropEvery-th one going to the client and sends every dupEvery-th
// one going to the server twice.
type lossyProxy struct {
	conn   *net.UDPConn
	server *net.UDPAddr
	wg     sync.WaitGroup

	mu                sync.Mutex
	client            *net.UDPAddr
	dropped, repeated int
}

func newLossyProxy(t *testing.T, server net.Addr, dropEvery, dupEvery int) *lossyProxy {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{conn: conn, server: server.(*net.UDPAddr)}
	p.wg.Add(1)
	go p.run(dropEvery, dupEvery)
	t.Cleanup(func() {
		_ = conn.Close()
		p.wg.Wait()
	})
	return p
}

func (p *lossyProxy) run(dropEvery, dupEvery int) {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	var toServer, toClient int
	for {
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		if from.Port == p.server.Port && from.IP.Equal(p.server.IP) {
			toClient++
			if toClient > 10 && toClient%dropEvery == 0 {
				p.dropped++
			} else if p.client != nil {
				_, _ = p.conn.WriteToUDP(buf[:n], p.client)
			}
		} else {
			p.client = from
			toServer++
			copies := 1
			if toServer > 10 && toServer%dupEvery == 0 {
				copies, p.repeated = 2, p.repeated+1
			}
			for range copies {
				_, _ = p.conn.WriteToUDP(buf[:n], p.server)
			}
		}
		p.mu.Unlock()
	}
}

// TestQUICLossesCounted: a path that loses and duplicates packets delivers
// every object intact (QUIC repairs it), and both repairs show in the
// sessions' stats: the server's lost packets, and the duplicates quic-go
// discarded on receipt.
func TestQUICLossesCounted(t *testing.T) {
	var proxy *lossyProxy
	p := newPairVia(t, nil, nil, func(server net.Addr) string {
		proxy = newLossyProxy(t, server, 25, 7)
		return proxy.conn.LocalAddr().String()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, sub := p.subscribed(ctx, t, "video")
	const total, perGroup, size = 1000, 50, 1200
	go writeObjects(t, pub, total, perGroup, size)
	for n := 0; n < total; n++ {
		obj, err := sub.ReadObject(ctx)
		if err != nil {
			t.Fatalf("after %d objects: %v", n, err)
		}
		if !bytes.Equal(obj.Payload, payloadFor(obj.GroupID, obj.ObjectID, size)) {
			t.Fatalf("payload mismatch for group %d object %d", obj.GroupID, obj.ObjectID)
		}
	}
	proxy.mu.Lock()
	dropped, repeated := proxy.dropped, proxy.repeated
	proxy.mu.Unlock()
	ss, cs := p.server.Stats(), p.client.Stats()
	t.Logf("proxy dropped %d datagrams to the client and repeated %d to the server; server: %d lost, %d dropped; client: %d lost, %d dropped",
		dropped, repeated, ss.PacketsLost, ss.PacketsDropped, cs.PacketsLost, cs.PacketsDropped)
	if dropped == 0 || repeated == 0 {
		t.Fatalf("the proxy dropped %d and repeated %d datagrams: too little traffic to test", dropped, repeated)
	}
	// Most injected faults must show. Not all need to, nor only they: on a
	// busy machine quic-go may also drop a late handshake packet or a packet
	// its full receive queue cannot take.
	if ss.PacketsLost < uint64(dropped)/2 {
		t.Errorf("server counted %d packets lost; the proxy dropped %d of its datagrams", ss.PacketsLost, dropped)
	}
	if ss.PacketsDropped < uint64(repeated)/2 {
		t.Errorf("server counted %d packets dropped; the proxy repeated %d datagrams to it", ss.PacketsDropped, repeated)
	}
}
