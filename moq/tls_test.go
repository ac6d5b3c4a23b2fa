package moq

import "crypto/tls"

func tlsInsecure() tls.Config {
	return tls.Config{InsecureSkipVerify: true, NextProtos: []string{ALPN}, MinVersion: tls.VersionTLS13}
}
