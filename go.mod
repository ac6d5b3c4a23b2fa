module github.com/moqsframe/moqsframe

go 1.26
