package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ServerTLS is a TLS 1.3 server config that presents cert and requires
// every client to present a certificate chained to v's anchors, with the
// clientAuth key usage and a member name, checked by v.Verify during the
// handshake: a client without one never reaches the application. Each
// refused handshake is reported to onRefused (if not nil) with the typed
// error (ErrUntrusted, ErrExpired, ...), so that servers can count them.
// Because the chain is verified here rather than by crypto/tls,
// ConnectionState.VerifiedChains stays empty: name the client with
// v.Peer. The caller sets NextProtos.
func ServerTLS(cert *Certificate, v *Verifier, onRefused func(error)) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert.TLS()},
		// Requested, not required of crypto/tls: a client without a
		// certificate then reaches the callback too, and is counted.
		ClientAuth: tls.RequestClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			err := ErrNoPeerCertificate
			if len(raw) > 0 {
				_, err = v.Verify(raw, nil)
			}
			if err != nil && onRefused != nil {
				onRefused(err)
			}
			return err
		},
	}
}

// Peer verifies the client certificate chain of a TLS connection (from a
// server using ServerTLS, or any other) and returns its identity. Errors:
// ErrNoPeerCertificate, and those of Verify.
func (v *Verifier) Peer(cs *tls.ConnectionState) (Identity, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return Identity{}, ErrNoPeerCertificate
	}
	return v.VerifyCertificates(cs.PeerCertificates, nil)
}

// ClientTLS is a TLS 1.3 client config that presents cert (nil: none) and
// verifies the server against roots' anchors.
func ClientTLS(cert *Certificate, v *Verifier) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: v.Roots()}
	if cert != nil {
		c.Certificates = []tls.Certificate{cert.TLS()}
	}
	return c
}

// ErrNoPeerCertificate: the TLS peer presented no verified certificate.
var ErrNoPeerCertificate = errors.New("identity: the peer presented no client certificate")

// Peer returns the identity of a TLS connection's client certificate as
// crypto/tls verified it (ClientAuth RequireAndVerifyClientCert or
// VerifyClientCertIfGiven with ClientCAs); for a server using ServerTLS use
// Verifier.Peer.
func Peer(cs *tls.ConnectionState) (string, error) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", ErrNoPeerCertificate
	}
	name, err := Name(cs.VerifiedChains[0][0])
	if err != nil {
		return "", fmt.Errorf("identity: peer: %w", err)
	}
	return name, nil
}
