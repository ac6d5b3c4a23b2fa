module github.com/moqsframe/moqsframe

go 1.26.0

require (
	go.etcd.io/bbolt v1.4.3
	golang.org/x/crypto v0.53.0
)

require golang.org/x/sys v0.46.0 // indirect
