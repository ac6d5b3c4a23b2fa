package identity

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// ServerTLS is a TLS 1.3 server config that presents cert and requires
// every client to present a certificate chained to v's anchors, with the
// clientAuth key usage and a member name (checked by Verify at handshake,
// so a client without one never reaches the application). The caller sets
// NextProtos.
func ServerTLS(cert *Certificate, v *Verifier) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert.TLS()},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    v.Roots(),
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := v.VerifyCertificates(cs.PeerCertificates, nil)
			return err
		},
	}
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

// Peer returns the identity of a TLS connection's verified client
// certificate (from a server using ServerTLS).
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
