module github.com/moqsframe/moqsframe

go 1.26.0

require (
	github.com/thomas-vilte/mls-go v1.6.0
	go.etcd.io/bbolt v1.4.3
	golang.org/x/crypto v0.53.0
)

require golang.org/x/sys v0.46.0 // indirect
