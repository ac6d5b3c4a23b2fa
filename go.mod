module github.com/moqsframe/moqsframe

go 1.26.0

require (
	github.com/klauspost/cpuid/v2 v2.3.0
	github.com/mengelbart/moqtransport v0.5.0
	github.com/pion/rtp v1.8.21
	github.com/quic-go/quic-go v0.53.0
	github.com/rogpeppe/go-internal v1.16.0
	github.com/thomas-vilte/mls-go v1.6.0
	go.etcd.io/bbolt v1.4.3
	golang.org/x/crypto v0.53.0
)

require (
	github.com/mengelbart/qlog v0.1.0 // indirect
	github.com/pion/randutil v0.1.0 // indirect
	go.uber.org/mock v0.5.0 // indirect
	golang.org/x/mod v0.22.0 // indirect
	golang.org/x/net v0.55.0 // indirect
	golang.org/x/sync v0.12.0 // indirect
	golang.org/x/sys v0.46.0 // indirect
	golang.org/x/tools v0.29.0 // indirect
)
