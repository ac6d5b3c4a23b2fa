module github.com/moqsframe/moqsframe

go 1.26

require github.com/pion/rtp v1.8.21

require github.com/pion/randutil v0.1.0 // indirect
