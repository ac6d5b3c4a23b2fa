module github.com/moqsframe/moqsframe

go 1.26

require github.com/klauspost/cpuid/v2 v2.3.0

require golang.org/x/sys v0.30.0 // indirect
